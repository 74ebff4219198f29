//! One node's versioned key-value state, as its owner or a peer holds it.

use std::collections::VecDeque;
use std::time::Duration;

use compact_str::CompactString;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::time::Timestamp;
use crate::wire::{KeyValueUpdate, ValueUpdate};

/// The status of a key's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ValueStatus {
    /// The key holds its value.
    Set,
    /// The key holds its value until it expires, a grace period after this node
    /// learned of the time to live.
    SetWithTtl,
    /// The key was deleted: a tombstone, collected after a grace period.
    Deleted,
}

/// A key's record: its value, the version its owner gave it, and its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionedValue {
    /// The value (empty for a tombstone).
    pub value: String,
    /// The owner's version of this record; versions of one node only grow.
    pub version: u64,
    /// Whether the key is set, expiring, or deleted.
    pub status: ValueStatus,
}

impl VersionedValue {
    /// Whether the key is readable (set, or set with a time to live not yet over).
    pub fn is_visible(&self) -> bool {
        self.status != ValueStatus::Deleted
    }
}

/// A key that garbage collection removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Collected {
    pub key: String,
    /// The key had a time to live (it expired) rather than being a tombstone.
    pub expired: bool,
}

/// One record, packed: key and value side by side in one string, stored inline
/// up to 24 bytes (most membership keys and values are short) and in one
/// allocation beyond.
#[derive(Clone, Debug)]
struct Body {
    key_and_value: CompactString,
    key_len: u32,
    status: ValueStatus,
}

impl Body {
    fn new(key: &str, value: &str, status: ValueStatus) -> Self {
        let len = key.len() + value.len();
        let key_and_value = if len <= INLINE_LEN {
            let mut inline = CompactString::new(key);
            inline.push_str(value);
            inline
        } else {
            // Built as a `String` and handed over as it is: one allocation of
            // exactly the record, and plain copies into it.
            let mut packed = String::with_capacity(len);
            packed.push_str(key);
            packed.push_str(value);
            CompactString::from_string_buffer(packed)
        };
        Body { key_and_value, key_len: key.len() as u32, status }
    }

    fn key(&self) -> &str {
        &self.key_and_value[..self.key_len as usize]
    }

    fn value(&self) -> &str {
        &self.key_and_value[self.key_len as usize..]
    }

    fn to_versioned(&self, version: u64) -> VersionedValue {
        VersionedValue { value: self.value().to_string(), version, status: self.status }
    }
}

/// The longest record a [`CompactString`] holds inline (on 64-bit targets).
const INLINE_LEN: usize = 3 * std::mem::size_of::<usize>();

/// A slot of the version log: a record, or a hole it left when overwritten.
#[derive(Clone, Debug)]
struct Slot {
    version: u64,
    body: Option<Body>,
}

/// Keys starting with this character are the protocol's own records
/// (accusations, see [`crate::Config::observers`]): hidden from the application's view of
/// a state, exempt from [`crate::Config::max_keys_per_node`] (their bytes count
/// against the memory budget like any other), and refused from
/// [`crate::Chitchat::set`].
pub const RESERVED_PREFIX: char = '\0';

/// The longest key of the protocol's records.
const RESERVED_KEY_LEN: usize = 32;

fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// Records above which a state keeps a hash index by key.
const INDEX_THRESHOLD: usize = 16;

fn hash_key(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// The state of one node: identity, heartbeat and versioned keys.
///
/// Records live in a log ordered by version (a delta reads only the slots it
/// sends), indexed by key in a hash table. An overwritten record leaves a hole
/// that is compacted away once holes outnumber records. Memory per record: a
/// 40-byte slot (key and value inline up to 24 bytes, else in one
/// allocation) and about 6 bytes of index; bounded by
/// [`crate::Config::max_keys_per_node`] records (twice that in slots, and a
/// garbage-collection queue of the same order). A state without records (as
/// most of a membership-only cluster's) holds no record store: 8 bytes.
#[derive(Clone, Debug)]
pub struct NodeState {
    id: NodeId,
    heartbeat: u64,
    max_version: u64,
    last_gc_version: u64,
    left: bool,
    /// `None` until the state's first record.
    store: Option<Box<Store>>,
}

/// A state's records.
#[derive(Clone, Debug, Default)]
struct Store {
    log: Vec<Slot>,
    /// Counts fit 32 bits: the log's indexes do (see `by_key`).
    holes: u32,
    /// Live records.
    records: u32,
    /// Of which the protocol's (see [`RESERVED_PREFIX`]).
    reserved: u32,
    /// Key → index in `log`, kept once there are more than `INDEX_THRESHOLD`
    /// records (below, a scan of the log is as fast and costs no memory).
    /// Boxed, as the garbage-collection queue: a store of a few records
    /// pays 8 bytes for each, not 32.
    by_key: Option<Box<HashTable<u32>>>,
    /// Tombstones and expiring keys, in the order this node learned of them
    /// (`None` while there are none).
    #[allow(clippy::box_collection, reason = "8 bytes in every store, 32 only in those with garbage")]
    pending_gc: Option<Box<VecDeque<(Timestamp, u64)>>>,
    /// What the live records cost, by [`record_cost`].
    held_bytes: usize,
}

/// The store of a state without records.
static EMPTY_STORE: Store = Store {
    log: Vec::new(),
    holes: 0,
    records: 0,
    reserved: 0,
    by_key: None,
    pending_gc: None,
    held_bytes: 0,
};

impl NodeState {
    pub(crate) fn new(id: NodeId) -> Self {
        NodeState { id, heartbeat: 0, max_version: 0, last_gc_version: 0, left: false, store: None }
    }

    /// The records, read.
    fn store(&self) -> &Store {
        self.store.as_deref().unwrap_or(&EMPTY_STORE)
    }

    /// The node's identity.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The node's heartbeat: a counter its owner raises only to refute an
    /// accusation (or a claim) about it; it is declared dead at a heartbeat
    /// and live again once the heartbeat goes past it.
    pub fn heartbeat(&self) -> u64 {
        self.heartbeat
    }

    /// The highest version held.
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    /// The highest version garbage-collected (or below which the state was reset).
    pub fn last_gc_version(&self) -> u64 {
        self.last_gc_version
    }

    /// Whether the node announced that it leaves the cluster.
    pub fn has_left(&self) -> bool {
        self.left
    }

    fn body(&self, key: &str) -> Option<(u64, &Body)> {
        self.store().body(key)
    }

    /// The value of `key`, unless absent or deleted.
    pub fn get(&self, key: &str) -> Option<&str> {
        if is_reserved(key) {
            return None;
        }
        self.body(key).filter(|(_, body)| body.status != ValueStatus::Deleted).map(|(_, body)| body.value())
    }

    /// What this state's records cost in memory, as counted against
    /// [`crate::Config::max_remote_state_bytes`]: for each record (tombstones
    /// included), its key and value bytes plus a fixed [`RECORD_OVERHEAD`].
    pub fn held_bytes(&self) -> usize {
        self.store().held_bytes
    }

    /// Why this state cannot take `update` within `limits`, if it cannot: its
    /// key or value over their lengths, or its key new and no room for one
    /// more (`OverLimit`); or the record would grow the state past
    /// `limits.max_bytes` (`OverBudget`).
    pub(crate) fn refusal(&self, update: &KeyValueUpdate, limits: &RecordLimits) -> Option<Refusal> {
        let held = self.body(&update.key).map(|(_, body)| record_cost(body.key_and_value.len()));
        self.refusal_given(update, limits, held)
    }

    /// [`NodeState::refusal`], given what the key's record held costs.
    fn refusal_given(
        &self,
        update: &KeyValueUpdate,
        limits: &RecordLimits,
        held: Option<usize>,
    ) -> Option<Refusal> {
        let value_len = match &update.value {
            ValueUpdate::Set(value) | ValueUpdate::SetWithTtl(value) => value.len(),
            ValueUpdate::Deleted => 0,
        };
        // The protocol's records are short and few: exempt from the count of
        // keys, and from a key length set below theirs.
        let reserved = is_reserved(&update.key);
        let max_key_len =
            if reserved { limits.max_key_len.max(RESERVED_KEY_LEN) } else { limits.max_key_len };
        if update.key.len() > max_key_len
            || value_len > limits.max_value_len
            || (held.is_none() && !reserved && self.num_records() >= limits.max_keys)
        {
            return Some(Refusal::OverLimit);
        }
        let held_bytes = self.held_bytes();
        let after = held_bytes - held.unwrap_or(0) + record_cost(update.key.len() + value_len);
        (after > limits.max_bytes && after > held_bytes).then_some(Refusal::OverBudget)
    }

    /// Drops the record of `key` if it is older than `version` (no tombstone
    /// is left): a newer record of the key could not be held, and the older
    /// one must not pass for current. Returns what was dropped.
    pub(crate) fn drop_older(&mut self, key: &str, version: u64) -> Option<VersionedValue> {
        self.body(key).filter(|(held, _)| *held < version)?;
        let taken = self.store.as_mut()?.take(key);
        self.release_if_empty();
        taken
    }

    /// Whether `key` has a record (a tombstone counts).
    pub fn contains_key(&self, key: &str) -> bool {
        !is_reserved(key) && self.store().find(key).is_some()
    }

    /// The record of `key`, tombstones included (a copy).
    pub fn get_versioned(&self, key: &str) -> Option<VersionedValue> {
        if is_reserved(key) {
            return None;
        }
        self.body(key).map(|(version, body)| body.to_versioned(version))
    }

    /// The application's records, in version order.
    fn bodies(&self) -> impl Iterator<Item = (u64, &Body)> {
        self.store()
            .log
            .iter()
            .filter_map(|slot| slot.body.as_ref().map(|body| (slot.version, body)))
            .filter(|(_, body)| !is_reserved(body.key()))
    }

    /// The protocol's records (see [`RESERVED_PREFIX`]): key, status, value.
    pub(crate) fn reserved_records(&self) -> impl Iterator<Item = (&str, ValueStatus, &str)> {
        let store = self.store();
        let any = store.reserved > 0;
        store
            .log
            .iter()
            .take_while(move |_| any)
            .filter_map(|slot| slot.body.as_ref())
            .filter(|body| is_reserved(body.key()))
            .map(|body| (body.key(), body.status, body.value()))
    }

    /// The visible keys and values, in key order.
    pub fn key_values(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut visible: Vec<(&str, &str)> = self
            .bodies()
            .filter(|(_, body)| body.status != ValueStatus::Deleted)
            .map(|(_, body)| (body.key(), body.value()))
            .collect();
        visible.sort_unstable_by_key(|(key, _)| *key);
        visible.into_iter()
    }

    /// Every record, tombstones included, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&str, VersionedValue)> {
        let mut records: Vec<(&str, VersionedValue)> =
            self.bodies().map(|(version, body)| (body.key(), body.to_versioned(version))).collect();
        records.sort_unstable_by_key(|(key, _)| *key);
        records.into_iter()
    }

    /// Visible keys starting with `prefix`, in key order.
    pub fn key_values_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.key_values().filter(move |(key, _)| key.starts_with(prefix))
    }

    /// Number of the application's records, tombstones included.
    pub fn num_records(&self) -> usize {
        let store = self.store();
        (store.records - store.reserved) as usize
    }

    pub(crate) fn set_heartbeat(&mut self, heartbeat: u64) {
        self.heartbeat = self.heartbeat.max(heartbeat);
    }

    /// The owner changes a key. Returns whether anything changed (setting the same
    /// value with the same status again bumps no version).
    pub(crate) fn set_own(&mut self, key: &str, value: &str, status: ValueStatus, now: Timestamp) -> bool {
        if let Some((_, body)) = self.body(key) {
            let same_value = status == ValueStatus::Deleted || body.value() == value;
            if body.status == status && same_value {
                return false;
            }
        }
        let version = self.max_version + 1;
        let value = if status == ValueStatus::Deleted { "" } else { value };
        self.insert_record(key, value, version, status, now, Order::Keep);
        true
    }

    /// The owner announces it leaves. The version bump makes peers that are up to
    /// date pull a section, which carries the flag.
    pub(crate) fn mark_left(&mut self) {
        if !self.left {
            self.max_version += 1;
            self.left = true;
        }
    }

    /// Applies one received record. Returns the previous record of the key if the
    /// received one is newer, `None` if it was ignored as old.
    #[cfg(test)]
    pub(crate) fn apply_record(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
    ) -> Option<Option<VersionedValue>> {
        self.apply_record_in(update, now, Order::Keep)
    }

    /// Applies the records of a reset, which may all lie below records already
    /// held (those above the sender's watermark): the log is sorted once at the
    /// end, not after each record, so a reset costs O(n log n) in its records
    /// and the ones held, whatever their order. Records this state cannot hold
    /// within `limits` are skipped; returns how many, by reason.
    pub(crate) fn apply_reset_records(
        &mut self,
        updates: &[KeyValueUpdate],
        now: Timestamp,
        limits: &RecordLimits,
    ) -> Skipped {
        let mut sorted = true;
        let mut skipped = Skipped::default();
        for update in updates {
            if let Some(refusal) = self.refusal(update, limits) {
                // As for any record that cannot be held: an older one of its
                // key must not pass for current.
                self.drop_older(&update.key, update.version);
                skipped.count(refusal);
                continue;
            }
            let in_order = self.store().log.last().is_none_or(|last| last.version < update.version);
            if self.apply_record_in(update, now, Order::Defer).is_some() && !in_order {
                sorted = false;
            }
        }
        if let Some(store) = &mut self.store {
            if !sorted {
                store.log.sort_by_key(|slot| slot.version);
                store.reindex();
            }
            store.compact_pending_gc();
        }
        self.release_if_empty();
        skipped
    }

    /// [`NodeState::refusal`], then [`NodeState::apply_record`] if there is
    /// none, with one lookup of the key for both (the path of every record
    /// a peer sends).
    pub(crate) fn apply_record_within(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
        limits: &RecordLimits,
    ) -> Result<Option<Option<VersionedValue>>, Refusal> {
        let hash = hash_key(&update.key);
        let found = self.store().find_hashed(&update.key, hash);
        let held = found.and_then(|index| {
            let slot = &self.store().log[index];
            slot.body.as_ref().map(|body| (slot.version, record_cost(body.key_and_value.len())))
        });
        if let Some(refusal) = self.refusal_given(update, limits, held.map(|(_, cost)| cost)) {
            return Err(refusal);
        }
        if held.is_some_and(|(version, _)| version >= update.version) {
            return Ok(None);
        }
        let (value, status) = update_value(update);
        Ok(Some(self.insert_record_found(
            &update.key,
            hash,
            found,
            value,
            update.version,
            status,
            now,
            Order::Keep,
        )))
    }

    fn apply_record_in(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
        order: Order,
    ) -> Option<Option<VersionedValue>> {
        let hash = hash_key(&update.key);
        let found = self.store().find_hashed(&update.key, hash);
        if let Some(index) = found
            && self.store().log[index].version >= update.version
        {
            return None;
        }
        let (value, status) = update_value(update);
        Some(self.insert_record_found(&update.key, hash, found, value, update.version, status, now, order))
    }

    fn insert_record(
        &mut self,
        key: &str,
        value: &str,
        version: u64,
        status: ValueStatus,
        now: Timestamp,
        order: Order,
    ) -> Option<VersionedValue> {
        let hash = hash_key(key);
        let found = self.store().find_hashed(key, hash);
        self.insert_record_found(key, hash, found, value, version, status, now, order)
    }

    /// Inserts a record of `key` (hashed `hash`), whose record held is in the
    /// log at `found`, if any.
    #[allow(clippy::too_many_arguments, reason = "the parts of one record, looked up once")]
    fn insert_record_found(
        &mut self,
        key: &str,
        hash: u64,
        found: Option<usize>,
        value: &str,
        version: u64,
        status: ValueStatus,
        now: Timestamp,
        order: Order,
    ) -> Option<VersionedValue> {
        let store = self.store.get_or_insert_default();
        let previous = found.and_then(|index| store.take_at(index, hash));
        if status != ValueStatus::Set {
            store.pending_gc.get_or_insert_default().push_back((now, version));
        }
        let in_order = store.log.last().is_none_or(|last| last.version < version);
        let index = store.log.len() as u32;
        store.log.push(Slot { version, body: Some(Body::new(key, value, status)) });
        store.records += 1;
        store.reserved += u32::from(is_reserved(key));
        store.held_bytes += record_cost(key.len() + value.len());
        if let Some(by_key) = &mut store.by_key {
            let log = &store.log;
            by_key.insert_unique(hash, index, |index| {
                hash_key(log[*index as usize].body.as_ref().map_or("", |body| body.key()))
            });
        }
        self.max_version = self.max_version.max(version);
        if !in_order && order == Order::Keep {
            // Only a reset applies records below ones already held.
            store.log.sort_by_key(|slot| slot.version);
            store.reindex();
        } else if store.holes as usize > store.log.len() / 2 + 8
            || (store.by_key.is_none() && store.records as usize > INDEX_THRESHOLD)
        {
            // Keeps the log's order, sorted or not.
            store.reindex();
        }
        if order == Order::Keep {
            store.compact_pending_gc();
        }
        previous
    }

    /// Drops the record store once it holds no record.
    fn release_if_empty(&mut self) {
        if self.store.as_ref().is_some_and(|store| store.records == 0) {
            self.store = None;
        }
    }

    /// Makes room for the first records of a state at once (a peer's first
    /// section), so that the log does not grow by doubling; later growth doubles,
    /// as usual. A state that the records will take past the index threshold
    /// is indexed before they come, so that each is found by its hash rather
    /// than by a scan of the log.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if additional == 0 {
            return;
        }
        let store = self.store.get_or_insert_default();
        if store.log.is_empty() {
            store.log.reserve_exact(additional);
        }
        if store.by_key.is_none() && store.records as usize + additional > INDEX_THRESHOLD {
            store.reindex_for(additional);
        }
    }

    /// Ends a section received from a peer: the node is now held up to
    /// `max_version`, and the peer's GC watermark and leave are recorded.
    pub(crate) fn finish_section(&mut self, max_version: u64, last_gc_version: u64, left: bool) {
        self.max_version = self.max_version.max(max_version);
        self.last_gc_version = self.last_gc_version.max(last_gc_version);
        self.left |= left;
    }

    /// Takes out every record with a version up to `version`, for a reset.
    pub(crate) fn take_records_up_to(&mut self, version: u64) -> Vec<(String, VersionedValue)> {
        let Some(store) = &mut self.store else { return Vec::new() };
        let end = store.log.partition_point(|slot| slot.version <= version);
        let keys: Vec<String> = store.log[..end]
            .iter()
            .filter_map(|slot| slot.body.as_ref().map(|body| body.key().to_string()))
            .collect();
        let taken: Vec<(String, VersionedValue)> =
            keys.into_iter().filter_map(|key| store.take(&key).map(|record| (key, record))).collect();
        store.reindex();
        self.release_if_empty();
        taken
    }

    /// The owner re-publishes its whole state above `above`, to refute a claim
    /// that it holds versions (or collected garbage) it never had: every
    /// record moves, in order, to a new version above `above`, and the GC
    /// watermark becomes `above`, so that every peer holding this node at or
    /// below the claim resets its copy from the owner's (dropping whatever was
    /// forged there). Values, statuses and expiry times do not change.
    pub(crate) fn republish_above(&mut self, above: u64) {
        self.last_gc_version = above;
        self.max_version = above + 1;
        let Some(store) = &mut self.store else { return };
        store.reindex();
        let mut renumbered = Vec::with_capacity(store.log.len());
        for (index, slot) in store.log.iter().enumerate() {
            renumbered.push((slot.version, above + 1 + index as u64));
        }
        for (slot, (_, new)) in store.log.iter_mut().zip(&renumbered) {
            slot.version = *new;
        }
        // The GC queue names records by version: follow them to the new ones
        // (both lists are in version order; entries of records gone are dropped).
        let renumber = |old: u64| {
            renumbered.binary_search_by_key(&old, |(old, _)| *old).ok().map(|index| renumbered[index].1)
        };
        if let Some(pending) = &mut store.pending_gc {
            **pending = pending
                .iter()
                .filter_map(|(marked_at, version)| renumber(*version).map(|new| (*marked_at, new)))
                .collect();
        }
        self.max_version = above + (store.log.len() as u64).max(1);
    }

    /// Sets the versions after a reset: the max may go down (the reset was cut
    /// short and versions above it must be fetched again).
    pub(crate) fn set_versions(&mut self, max_version: u64, last_gc_version: u64) {
        self.max_version = max_version;
        self.last_gc_version = self.last_gc_version.max(last_gc_version);
    }

    /// Records with a version in `(from_version, max_version]`, in increasing
    /// version order. After a reset cut short, records above the max version may
    /// be held (they were above the sender's watermark, so still valid) while
    /// versions below them are missing: they are not sent until the gap is filled.
    pub(crate) fn records_since(&self, from_version: u64) -> impl Iterator<Item = KeyValueUpdate> + '_ {
        let log = &self.store().log;
        let start = log.partition_point(|slot| slot.version <= from_version);
        let end = log.partition_point(|slot| slot.version <= self.max_version).max(start);
        log[start..end].iter().filter_map(|slot| slot.body.as_ref().map(|body| to_update(body, slot.version)))
    }

    /// Removes the tombstones and expiring keys marked at least `grace_period`
    /// before `now`.
    pub(crate) fn collect_garbage(&mut self, now: Timestamp, grace_period: Duration) -> Vec<Collected> {
        let mut collected = Vec::new();
        let Some(store) = &mut self.store else { return collected };
        while let Some(pending) = store.pending_gc.as_deref_mut()
            && let Some(&(marked_at, version)) = pending.front()
            && marked_at + grace_period <= now
        {
            pending.pop_front();
            let Some(index) = slot_at(&store.log, version) else { continue };
            let Some(body) = &store.log[index].body else { continue };
            if body.status == ValueStatus::Set {
                continue;
            }
            let expired = body.status == ValueStatus::SetWithTtl;
            let key = body.key().to_string();
            store.take(&key);
            self.last_gc_version = self.last_gc_version.max(version);
            collected.push(Collected { key, expired });
        }
        if store.pending_gc.as_ref().is_some_and(|pending| pending.is_empty()) {
            store.pending_gc = None;
        }
        self.release_if_empty();
        collected
    }

    /// Whether tombstones or expiring keys wait for garbage collection.
    pub(crate) fn has_pending_gc(&self) -> bool {
        self.store().pending_gc.as_ref().is_some_and(|pending| !pending.is_empty())
    }

    /// Size of the garbage-collection queue (for bound checks).
    #[cfg(test)]
    pub(crate) fn pending_gc_len(&self) -> usize {
        self.store().pending_gc.as_ref().map_or(0, |pending| pending.len())
    }
}

impl Store {
    fn find(&self, key: &str) -> Option<usize> {
        if self.by_key.is_none() {
            return self.scan(key);
        }
        self.find_hashed(key, hash_key(key))
    }

    /// The slot holding `key`'s record, by the log (a short one, not indexed).
    fn scan(&self, key: &str) -> Option<usize> {
        self.log.iter().position(|slot| slot.body.as_ref().is_some_and(|body| body.key() == key))
    }

    /// [`Store::find`], given `key`'s [`hash_key`].
    fn find_hashed(&self, key: &str, hash: u64) -> Option<usize> {
        let log = &self.log;
        let Some(by_key) = &self.by_key else { return self.scan(key) };
        let is_key = |index: &u32| log[*index as usize].body.as_ref().is_some_and(|body| body.key() == key);
        by_key.find(hash, is_key).map(|index| *index as usize)
    }

    fn body(&self, key: &str) -> Option<(u64, &Body)> {
        let slot = &self.log[self.find(key)?];
        slot.body.as_ref().map(|body| (slot.version, body))
    }

    /// Entries for overwritten records linger in the GC queue until collected;
    /// compacts the queue when they would outnumber the records. Needs the log
    /// sorted.
    fn compact_pending_gc(&mut self) {
        let Some(pending) = &mut self.pending_gc else { return };
        if pending.len() > 2 * self.records as usize + 16 {
            let log = &self.log;
            pending.retain(|(_, version)| slot_at(log, *version).is_some());
        }
    }

    /// Removes the record of `key`, leaving a hole.
    fn take(&mut self, key: &str) -> Option<VersionedValue> {
        let hash = hash_key(key);
        let index = self.find_hashed(key, hash)?;
        self.take_at(index, hash)
    }

    /// Removes the record at `index` of the log, whose key hashes to `hash`,
    /// leaving a hole.
    fn take_at(&mut self, index: usize, hash: u64) -> Option<VersionedValue> {
        if let Some(by_key) = &mut self.by_key
            && let Ok(found) = by_key.find_entry(hash, |at| *at as usize == index)
        {
            found.remove();
        }
        let slot = &mut self.log[index];
        let body = slot.body.take()?;
        self.holes += 1;
        self.records -= 1;
        self.reserved -= u32::from(is_reserved(body.key()));
        self.held_bytes -= record_cost(body.key_and_value.len());
        Some(body.to_versioned(slot.version))
    }

    /// Drops the holes and rebuilds the key index (if the store is large
    /// enough to need one).
    fn reindex(&mut self) {
        self.reindex_for(0);
    }

    /// Drops the holes and rebuilds the key index if the store, with
    /// `coming` more records, is large enough to need one.
    fn reindex_for(&mut self, coming: usize) {
        self.log.retain(|slot| slot.body.is_some());
        self.holes = 0;
        if self.records as usize + coming <= INDEX_THRESHOLD {
            self.by_key = None;
            return;
        }
        let by_key = self.by_key.get_or_insert_default();
        by_key.clear();
        let log = &self.log;
        // Room for the records coming too: a section of a peer's state fills
        // the index at once, not by doubling it.
        let key_of = |index: &u32| hash_key(log[*index as usize].body.as_ref().map_or("", |body| body.key()));
        by_key.reserve(self.records as usize + coming, key_of);
        for (index, slot) in log.iter().enumerate() {
            let key = slot.body.as_ref().map_or("", |body| body.key());
            by_key.insert_unique(hash_key(key), index as u32, |index| {
                hash_key(log[*index as usize].body.as_ref().map_or("", |body| body.key()))
            });
        }
    }
}

/// What one record costs against [`crate::Config::max_remote_state_bytes`],
/// beyond its key and value bytes: its log slot (40 bytes), its share of the
/// key index and of the garbage-collection queue, and the allocator's
/// rounding. A round figure that makes many tiny records count too.
pub const RECORD_OVERHEAD: usize = 64;

/// What a record of `key_and_value_len` bytes of key and value costs.
fn record_cost(key_and_value_len: usize) -> usize {
    key_and_value_len + RECORD_OVERHEAD
}

/// What a node can hold of another node's state: its own limits on keys and
/// values, which the owner's may exceed, and what is left of its memory budget.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordLimits {
    /// Longest key, in bytes.
    pub(crate) max_key_len: usize,
    /// Longest value, in bytes.
    pub(crate) max_value_len: usize,
    /// Most records (tombstones included).
    pub(crate) max_keys: usize,
    /// Most [`NodeState::held_bytes`] the state may reach: the budget for
    /// remote state, less what the other nodes' states hold. A record that
    /// would grow the state past it is refused; one that shrinks or keeps it
    /// is taken even when the state is over (the budget may have been lowered).
    pub(crate) max_bytes: usize,
}

/// Why a record was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over a limit on keys, values or records per node.
    OverLimit,
    /// Over the memory budget for remote state.
    OverBudget,
}

/// Records skipped, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub(crate) over_limit: u64,
    pub(crate) over_budget: u64,
}

impl Skipped {
    pub(crate) fn count(&mut self, refusal: Refusal) {
        match refusal {
            Refusal::OverLimit => self.over_limit += 1,
            Refusal::OverBudget => self.over_budget += 1,
        }
    }
}

/// Whether a record inserted below the log's last version sorts the log at once
/// (`Keep`) or leaves it to the caller, who sorts once after a batch (`Defer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Keep,
    Defer,
}

/// The index of the live slot holding `version`.
fn slot_at(log: &[Slot], version: u64) -> Option<usize> {
    let index = log.binary_search_by_key(&version, |slot| slot.version).ok()?;
    log[index].body.is_some().then_some(index)
}

/// A wire record's value and status.
fn update_value(update: &KeyValueUpdate) -> (&str, ValueStatus) {
    match &update.value {
        ValueUpdate::Set(value) => (value.as_str(), ValueStatus::Set),
        ValueUpdate::SetWithTtl(value) => (value.as_str(), ValueStatus::SetWithTtl),
        ValueUpdate::Deleted => ("", ValueStatus::Deleted),
    }
}

/// A record as a wire record.
fn to_update(body: &Body, version: u64) -> KeyValueUpdate {
    let value = match body.status {
        ValueStatus::Set => ValueUpdate::Set(body.value().into()),
        ValueStatus::SetWithTtl => ValueUpdate::SetWithTtl(body.value().into()),
        ValueStatus::Deleted => ValueUpdate::Deleted,
    };
    KeyValueUpdate { key: body.key().into(), version, value }
}

#[cfg(test)]
mod tests;
