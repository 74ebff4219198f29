//! One node's versioned key-value state, as its owner or a peer holds it.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use std::time::Duration;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::time::Timestamp;
use crate::wire::size::record_len_of;
use crate::wire::{KeyValueOut, KeyValueUpdate, ValueOut, ValueUpdate};

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

/// A slot of the version log: a record's version, status and where its key
/// and value lie in [`Store::bytes`], or a hole a record left when it was
/// overwritten or removed (its bytes stay until the store is compacted).
/// 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    version: u64,
    /// Where the record's key starts in [`Store::bytes`]. Its value follows
    /// the key and ends where the next slot's record starts (the last one's
    /// at the end of the bytes).
    start: u32,
    /// The key's length (low 24 bits) and the record's status (high 8 bits:
    /// 0 for a hole, else `ValueStatus` as `status_code` numbers it).
    key_len_and_status: u32,
}

/// The longest key a slot can say (24 bits). Longer ones cannot be
/// configured: a key with its value must fit a stream frame (1 MiB).
const MAX_SLOT_KEY_LEN: usize = (1 << 24) - 1;

/// The most [`NodeState::held_bytes`] one state may reach, whatever the
/// configuration allows: its bytes are addressed by 32-bit offsets, and the
/// holes a store tolerates (a quarter of its records' bytes, plus one
/// record) keep it under 4 GiB. A peer's record past it is refused as over
/// budget; the owner's own, with [`crate::KeyValueError::StateTooLarge`].
pub(crate) const MAX_STATE_BYTES: usize = 1 << 31;

fn status_code(status: ValueStatus) -> u32 {
    match status {
        ValueStatus::Set => 1,
        ValueStatus::SetWithTtl => 2,
        ValueStatus::Deleted => 3,
    }
}

impl Slot {
    fn new(version: u64, start: usize, key_len: usize, status: ValueStatus) -> Self {
        debug_assert!(key_len <= MAX_SLOT_KEY_LEN);
        Slot {
            version,
            start: u32::try_from(start).expect("a store's bytes stay under 4 GiB (MAX_STATE_BYTES)"),
            key_len_and_status: key_len as u32 | (status_code(status) << 24),
        }
    }

    fn key_len(&self) -> usize {
        (self.key_len_and_status & MAX_SLOT_KEY_LEN as u32) as usize
    }

    /// The record's status; `None` for a hole.
    fn status(&self) -> Option<ValueStatus> {
        match self.key_len_and_status >> 24 {
            1 => Some(ValueStatus::Set),
            2 => Some(ValueStatus::SetWithTtl),
            3 => Some(ValueStatus::Deleted),
            _ => None,
        }
    }

    fn is_live(&self) -> bool {
        self.key_len_and_status >> 24 != 0
    }

    fn make_hole(&mut self) {
        self.key_len_and_status &= MAX_SLOT_KEY_LEN as u32;
    }
}

/// A live record of a store, read in place.
#[derive(Clone, Copy, Debug)]
struct RecordRef<'a> {
    version: u64,
    key: &'a str,
    value: &'a str,
    status: ValueStatus,
}

impl RecordRef<'_> {
    fn to_versioned(self) -> VersionedValue {
        VersionedValue { value: self.value.to_string(), version: self.version, status: self.status }
    }
}

impl<'a> RecordRef<'a> {
    /// The record as a sender writes it, borrowed from the store.
    fn to_out(self) -> KeyValueOut<'a> {
        let value = match self.status {
            ValueStatus::Set => ValueOut::Set(self.value),
            ValueStatus::SetWithTtl => ValueOut::SetWithTtl(self.value),
            ValueStatus::Deleted => ValueOut::Deleted,
        };
        KeyValueOut { key: self.key, version: self.version, value }
    }
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
const INDEX_THRESHOLD: usize = 32;

fn hash_key(key: &str) -> u64 {
    hash_key_bytes(key.as_bytes())
}

/// [`hash_key`] of a key read as bytes (from a store's bytes, to rehash its
/// index): the one definition both go through.
///
/// Keys come from the network, so the hash is keyed, with a seed drawn once
/// a process (as `HashMap`'s is): unkeyed, a member could choose keys that
/// share one bucket of a state's index, and every lookup in that state would
/// walk them all. Only the index's layout and the key filter's bits depend on
/// the seed, never what a node sends or holds.
fn hash_key_bytes(key: &[u8]) -> u64 {
    static SEED: LazyLock<u64> = LazyLock::new(|| RandomState::new().hash_one("chitchat key hash"));
    xxhash_rust::xxh3::xxh3_64_with_seed(key, *SEED)
}

/// The state of one node: identity, heartbeat and versioned keys.
///
/// Records live in a log ordered by version (a delta reads only the slots it
/// sends), their keys and values back to back in one string in the same
/// order, indexed by key in a hash table once there are more than a few. An
/// overwritten record leaves a hole that is compacted away once holes
/// outnumber records or their bytes pass a quarter of the records'. Memory
/// per record: its key and value bytes, a 16-byte slot and, in an indexed
/// store, about 6 bytes of index; bounded by
/// [`crate::Config::max_keys_per_node`] records (twice that in slots, and a
/// garbage-collection queue of the same order). A state at heartbeat and
/// version 0 (most of a membership-only cluster's: the heartbeat rises only
/// to refute an accusation, and no record was ever set) holds no record
/// store: 8 bytes beside its identity.
#[derive(Clone, Debug)]
pub struct NodeState {
    id: NodeId,
    /// `None` while the state is at heartbeat and version 0, with nothing
    /// collected and no leave.
    store: Option<Box<Store>>,
}

/// A state's heartbeat, versions and records, and whether the node left:
/// kept apart from the identity, which every tracked node has, as most
/// states of a membership-only cluster have none of them (32 bytes less for
/// each of those; the same bytes for a state with records, which has a
/// store anyway).
#[derive(Clone, Debug, Default)]
struct Store {
    /// See [`NodeState::heartbeat`].
    heartbeat: u64,
    /// The highest version held (see [`NodeState::max_version`]).
    max_version: u64,
    /// See [`NodeState::last_gc_version`].
    last_gc_version: u64,
    /// The node announced that it leaves (see [`NodeState::has_left`]).
    left: bool,
    log: Vec<Slot>,
    /// The keys and values of the log's slots, holes included, back to back
    /// in log order.
    bytes: String,
    /// Of which the holes'.
    garbage: usize,
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
    /// While there is no index: a bit for each key held (see [`key_bit`]),
    /// so that a key looked up by its hash that has none is known absent
    /// without a scan (a peer's new records, most of what arrives). Bits of
    /// keys removed stay until the log is compacted.
    key_filter: u64,
    /// Tombstones and expiring keys, in the order this node learned of them
    /// (`None` while there are none).
    #[allow(clippy::box_collection, reason = "8 bytes in every store, 32 only in those with garbage")]
    pending_gc: Option<Box<VecDeque<(Timestamp, u64)>>>,
    /// What the live records cost, by [`record_cost`].
    held_bytes: usize,
}

/// What a state without a store reads: heartbeat and versions 0, no record.
static EMPTY_STORE: Store = Store {
    heartbeat: 0,
    max_version: 0,
    last_gc_version: 0,
    left: false,
    log: Vec::new(),
    bytes: String::new(),
    garbage: 0,
    holes: 0,
    records: 0,
    reserved: 0,
    by_key: None,
    key_filter: 0,
    pending_gc: None,
    held_bytes: 0,
};

impl NodeState {
    pub(crate) fn new(id: NodeId) -> Self {
        NodeState { id, store: None }
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
        self.store().heartbeat
    }

    /// The highest version held.
    pub fn max_version(&self) -> u64 {
        self.store().max_version
    }

    /// The highest version garbage-collected (or below which the state was reset).
    pub fn last_gc_version(&self) -> u64 {
        self.store().last_gc_version
    }

    /// Whether the node announced that it leaves the cluster.
    pub fn has_left(&self) -> bool {
        self.store().left
    }

    fn record(&self, key: &str) -> Option<RecordRef<'_>> {
        self.store().record(key)
    }

    /// The value of `key`, unless absent or deleted.
    pub fn get(&self, key: &str) -> Option<&str> {
        if is_reserved(key) {
            return None;
        }
        self.record(key).filter(|record| record.status != ValueStatus::Deleted).map(|record| record.value)
    }

    /// What this state's records cost in memory, as counted against
    /// [`crate::Config::max_remote_state_bytes`]: for each record (tombstones
    /// included), its key and value bytes plus a fixed [`RECORD_OVERHEAD`].
    pub fn held_bytes(&self) -> usize {
        self.store().held_bytes
    }

    /// Whether setting `key` to a value of `value_len` bytes keeps this state
    /// within [`MAX_STATE_BYTES`].
    pub(crate) fn has_room_for(&self, key: &str, value_len: usize) -> bool {
        let held = self.record(key).map_or(0, |record| record_cost(record.len()));
        self.held_bytes() - held + record_cost(key.len() + value_len) <= MAX_STATE_BYTES
    }

    /// Why this state cannot take `update` within `limits`, if it cannot: its
    /// key or value over their lengths, or its key new and no room for one
    /// more (`OverLimit`); or the record would grow the state past
    /// `limits.max_bytes` or [`MAX_STATE_BYTES`] (`OverBudget`).
    #[cfg(test)]
    pub(crate) fn refusal(&self, update: &KeyValueUpdate, limits: &RecordLimits) -> Option<Refusal> {
        let held = self.record(&update.key).map(|record| record_cost(record.len()));
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
        if update.key.len() > max_key_len.min(MAX_SLOT_KEY_LEN)
            || value_len > limits.max_value_len
            || (held.is_none() && !reserved && self.num_records() >= limits.max_keys)
        {
            return Some(Refusal::OverLimit);
        }
        let held_bytes = self.held_bytes();
        let after = held_bytes - held.unwrap_or(0) + record_cost(update.key.len() + value_len);
        ((after > limits.max_bytes || after > MAX_STATE_BYTES) && after > held_bytes)
            .then_some(Refusal::OverBudget)
    }

    /// Drops the record of `key` if it is older than `version` (no tombstone
    /// is left): a newer record of the key could not be held, and the older
    /// one must not pass for current. Returns what was dropped.
    pub(crate) fn drop_older(&mut self, key: &str, version: u64) -> Option<VersionedValue> {
        self.record(key).filter(|record| record.version < version)?;
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
        self.record(key).map(RecordRef::to_versioned)
    }

    /// The value, status and version of `key`'s record, read in place,
    /// unless absent, deleted or the protocol's.
    pub(crate) fn visible_record(&self, key: &str) -> Option<(&str, ValueStatus, u64)> {
        if is_reserved(key) {
            return None;
        }
        let record = self.store().record_hashed(key, hash_key(key))?;
        (record.status != ValueStatus::Deleted).then_some((record.value, record.status, record.version))
    }

    /// The application's records, in version order.
    fn app_records(&self) -> impl Iterator<Item = RecordRef<'_>> {
        self.store().live().filter(|record| !is_reserved(record.key))
    }

    /// The protocol's records (see [`RESERVED_PREFIX`]): key, status, value.
    pub(crate) fn reserved_records(&self) -> impl Iterator<Item = (&str, ValueStatus, &str)> {
        let store = self.store();
        let any = store.reserved > 0;
        store
            .live()
            .take_while(move |_| any)
            .filter(|record| is_reserved(record.key))
            .map(|record| (record.key, record.status, record.value))
    }

    /// The visible keys and values, in key order.
    pub fn key_values(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut visible: Vec<(&str, &str)> = self
            .app_records()
            .filter(|record| record.status != ValueStatus::Deleted)
            .map(|record| (record.key, record.value))
            .collect();
        visible.sort_unstable_by_key(|(key, _)| *key);
        visible.into_iter()
    }

    /// Every record, tombstones included, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&str, VersionedValue)> {
        let mut records: Vec<(&str, VersionedValue)> =
            self.app_records().map(|record| (record.key, record.to_versioned())).collect();
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

    /// Whether the state holds a record, the protocol's included.
    pub(crate) fn holds_records(&self) -> bool {
        self.store().records > 0
    }

    /// Number of the application's records, tombstones included.
    pub fn num_records(&self) -> usize {
        let store = self.store();
        (store.records - store.reserved) as usize
    }

    /// Raises the heartbeat to `heartbeat` (it never goes down).
    pub(crate) fn set_heartbeat(&mut self, heartbeat: u64) {
        if heartbeat > self.heartbeat() {
            self.store.get_or_insert_default().heartbeat = heartbeat;
        }
    }

    /// The owner changes a key. Returns whether anything changed (setting the same
    /// value with the same status again bumps no version).
    pub(crate) fn set_own(&mut self, key: &str, value: &str, status: ValueStatus, now: Timestamp) -> bool {
        if let Some(record) = self.record(key) {
            let same_value = status == ValueStatus::Deleted || record.value == value;
            if record.status == status && same_value {
                return false;
            }
        }
        let version = self.max_version() + 1;
        let value = if status == ValueStatus::Deleted { "" } else { value };
        self.insert_record(key, value, version, status, now, Order::Keep);
        true
    }

    /// The owner announces it leaves. The version bump makes peers that are up to
    /// date pull a section, which carries the flag.
    pub(crate) fn mark_left(&mut self) {
        if !self.has_left() {
            let store = self.store.get_or_insert_default();
            store.max_version += 1;
            store.left = true;
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
            let in_order = self.store().log.last().is_none_or(|last| last.version < update.version);
            match self.apply_within(update, now, limits, Order::Defer, false) {
                Err(refusal) => {
                    // As for any record that cannot be held: an older one of
                    // its key must not pass for current.
                    self.drop_older(&update.key, update.version);
                    skipped.count(refusal);
                }
                Ok(Some(_)) if !in_order => sorted = false,
                Ok(_) => {}
            }
        }
        if let Some(store) = &mut self.store {
            if !sorted {
                store.sort_by_version();
            }
            store.compact_pending_gc();
        }
        self.release_if_empty();
        skipped
    }

    /// [`NodeState::refusal`], then [`NodeState::apply_record`] if there is
    /// none, with one lookup of the key for both (the path of every record
    /// a peer sends). `absent`: the state holds no record of the key, and
    /// the lookup is skipped (a section applied to a state that held no
    /// record when it began: the wire checked that a section's keys are
    /// distinct).
    pub(crate) fn apply_record_within(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
        limits: &RecordLimits,
        absent: bool,
    ) -> Result<Option<Option<VersionedValue>>, Refusal> {
        self.apply_within(update, now, limits, Order::Keep, absent)
    }

    /// [`NodeState::apply_record_within`], keeping the log's order or not.
    fn apply_within(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
        limits: &RecordLimits,
        order: Order,
        absent: bool,
    ) -> Result<Option<Option<VersionedValue>>, Refusal> {
        let hash = hash_key(&update.key);
        let store = self.store();
        debug_assert!(!absent || store.find_hashed(&update.key, hash).is_none(), "{} is held", update.key);
        let found = if absent { None } else { store.find_hashed(&update.key, hash) };
        let held = found.map(|index| (store.log[index].version, record_cost(store.record_len(index))));
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
            order,
        )))
    }

    #[cfg(test)]
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
        store.push(key, value, version, status, hash);
        store.max_version = store.max_version.max(version);
        if !in_order && order == Order::Keep {
            // Only a reset applies records below ones already held.
            store.sort_by_version();
        } else if store.needs_compaction() {
            // Keeps the log's order, sorted or not.
            store.compact();
        }
        if order == Order::Keep {
            store.compact_pending_gc();
        }
        previous
    }

    /// Drops the record store once it holds what a state without one reads
    /// as: no record, heartbeat and version 0, nothing collected, no leave.
    fn release_if_empty(&mut self) {
        if self.store.as_ref().is_some_and(|store| {
            store.records == 0
                && !store.left
                && (store.heartbeat, store.max_version, store.last_gc_version) == (0, 0, 0)
        }) {
            self.store = None;
        }
    }

    /// Raises the versions to at least `max_version` and `last_gc_version`,
    /// making a store only if one of them goes up.
    fn raise_versions(&mut self, max_version: u64, last_gc_version: u64) {
        if max_version > self.max_version() || last_gc_version > self.last_gc_version() {
            let store = self.store.get_or_insert_default();
            store.max_version = store.max_version.max(max_version);
            store.last_gc_version = store.last_gc_version.max(last_gc_version);
        }
    }

    /// Makes room for the records of a peer's section (`updates`) at once,
    /// those above `held` (the ones it will apply), so that the log and its
    /// bytes do not grow record by record: exactly for a large section (a
    /// state's first one, or a stream frame's part of it), by a quarter at
    /// least for small ones (see [`grow`]). A state that the records will
    /// take past the index threshold is indexed before they come, so that
    /// each is found by its hash rather than by a scan of the log.
    ///
    /// Only if they all fit `limits` (as new keys): room is never made for
    /// records that will be refused, so that what a state holds in memory
    /// stays within what its budget counts (and a quarter more).
    pub(crate) fn reserve(&mut self, updates: &[KeyValueUpdate], held: u64, limits: &RecordLimits) {
        let coming = updates.iter().filter(|update| update.version > held);
        let (records, bytes) = coming.fold((0, 0), |(records, bytes), update| {
            (records + 1, bytes + update.key.len() + update_value(update).0.len())
        });
        let fits = self.num_records() + records <= limits.max_keys
            && self.held_bytes() + bytes + records * RECORD_OVERHEAD <= limits.max_bytes.min(MAX_STATE_BYTES);
        if records == 0 || !fits {
            return;
        }
        let store = self.store.get_or_insert_default();
        grow(&mut store.log, records);
        grow_bytes(&mut store.bytes, bytes);
        if store.by_key.is_none() && store.records as usize + records > INDEX_THRESHOLD {
            store.reindex_for(records);
        }
    }

    /// Ends a section received from a peer: the node is now held up to
    /// `max_version`, and the peer's GC watermark and leave are recorded.
    pub(crate) fn finish_section(&mut self, max_version: u64, last_gc_version: u64, left: bool) {
        self.raise_versions(max_version, last_gc_version);
        if left {
            self.store.get_or_insert_default().left = true;
        }
        self.release_if_empty();
    }

    /// Takes out every record with a version up to `version`, for a reset.
    pub(crate) fn take_records_up_to(&mut self, version: u64) -> Vec<(String, VersionedValue)> {
        let Some(store) = &mut self.store else { return Vec::new() };
        let end = store.log.partition_point(|slot| slot.version <= version);
        let mut taken = Vec::new();
        for index in 0..end {
            let Some(record) = store.record_at(index) else { continue };
            let key = record.key.to_string();
            if let Some(record) = store.take_at(index, hash_key(&key)) {
                taken.push((key, record));
            }
        }
        store.compact();
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
        let store = self.store.get_or_insert_default();
        store.last_gc_version = above;
        store.max_version = above + 1;
        store.compact();
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
        store.max_version = above + (store.log.len() as u64).max(1);
    }

    /// Sets the versions after a reset: the max may go down (the reset was cut
    /// short and versions above it must be fetched again).
    pub(crate) fn set_versions(&mut self, max_version: u64, last_gc_version: u64) {
        let last_gc_version = self.last_gc_version().max(last_gc_version);
        if (max_version, last_gc_version) != (self.max_version(), self.last_gc_version()) {
            let store = self.store.get_or_insert_default();
            store.max_version = max_version;
            store.last_gc_version = last_gc_version;
        }
        self.release_if_empty();
    }

    /// Records with a version in `(from_version, max_version]`, in increasing
    /// version order. After a reset cut short, records above the max version may
    /// be held (they were above the sender's watermark, so still valid) while
    /// versions below them are missing: they are not sent until the gap is filled.
    /// They are read in place, as a delta writes them.
    pub(crate) fn records_since(&self, from_version: u64) -> impl Iterator<Item = KeyValueOut<'_>> + '_ {
        let store = self.store();
        store.slots_since(from_version).filter_map(|index| store.record_at(index)).map(RecordRef::to_out)
    }

    /// The versions and encoded lengths ([`crate::wire::size::record_len_of`])
    /// of [`NodeState::records_since`]'s records, from the log alone: what a
    /// delta counts before it writes them, without reading their bytes.
    pub(crate) fn record_lens_since(&self, from_version: u64) -> impl Iterator<Item = (u64, usize)> + '_ {
        let store = self.store();
        store.slots_since(from_version).filter_map(|index| {
            let slot = &store.log[index];
            let value_len = store.record_len(index) - slot.key_len();
            let value_len = match slot.status()? {
                ValueStatus::Set | ValueStatus::SetWithTtl => Some(value_len),
                ValueStatus::Deleted => None,
            };
            Some((slot.version, record_len_of(slot.key_len(), slot.version, value_len)))
        })
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
            let Some(record) = store.record_at(index) else { continue };
            if record.status == ValueStatus::Set {
                continue;
            }
            let expired = record.status == ValueStatus::SetWithTtl;
            let key = record.key.to_string();
            store.take_at(index, hash_key(&key));
            store.last_gc_version = store.last_gc_version.max(version);
            collected.push(Collected { key, expired });
        }
        if store.pending_gc.as_ref().is_some_and(|pending| pending.is_empty()) {
            store.pending_gc = None;
        }
        if store.needs_compaction() {
            store.compact();
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

impl RecordRef<'_> {
    /// The record's key and value bytes.
    fn len(&self) -> usize {
        self.key.len() + self.value.len()
    }
}

impl Store {
    /// The slots of the versions in `(from_version, max_version]`: what
    /// [`NodeState::records_since`] reads.
    fn slots_since(&self, from_version: u64) -> std::ops::Range<usize> {
        let start = self.log.partition_point(|slot| slot.version <= from_version);
        let end = self.log.partition_point(|slot| slot.version <= self.max_version).max(start);
        start..end
    }

    /// Where the record of the slot at `index` ends in `bytes`.
    fn end(&self, index: usize) -> usize {
        self.log.get(index + 1).map_or(self.bytes.len(), |next| next.start as usize)
    }

    /// The key and value bytes of the slot at `index` (a hole's too).
    fn record_len(&self, index: usize) -> usize {
        self.end(index) - self.log[index].start as usize
    }

    /// The live record at `index`; `None` for a hole.
    fn record_at(&self, index: usize) -> Option<RecordRef<'_>> {
        let slot = &self.log[index];
        let status = slot.status()?;
        let start = slot.start as usize;
        let key_end = start + slot.key_len();
        Some(RecordRef {
            version: slot.version,
            key: &self.bytes[start..key_end],
            value: &self.bytes[key_end..self.end(index)],
            status,
        })
    }

    /// The live records, in log order.
    fn live(&self) -> impl Iterator<Item = RecordRef<'_>> {
        (0..self.log.len()).filter_map(|index| self.record_at(index))
    }

    fn record(&self, key: &str) -> Option<RecordRef<'_>> {
        self.record_at(self.find(key)?)
    }

    fn record_hashed(&self, key: &str, hash: u64) -> Option<RecordRef<'_>> {
        self.record_at(self.find_hashed(key, hash)?)
    }

    fn find(&self, key: &str) -> Option<usize> {
        if self.by_key.is_none() {
            return self.scan(key);
        }
        self.find_hashed(key, hash_key(key))
    }

    /// The slot holding `key`'s record, by the log (a short one, not indexed).
    fn scan(&self, key: &str) -> Option<usize> {
        let bytes = self.bytes.as_bytes();
        self.log.iter().position(|slot| slot_holds(bytes, slot, key.as_bytes()))
    }

    /// Whether the slot at `index` holds a record of `key`.
    fn holds(&self, index: usize, key: &str) -> bool {
        slot_holds(self.bytes.as_bytes(), &self.log[index], key.as_bytes())
    }

    /// [`Store::find`], given `key`'s [`hash_key`].
    fn find_hashed(&self, key: &str, hash: u64) -> Option<usize> {
        let Some(by_key) = &self.by_key else {
            return (self.key_filter & key_bit(hash) != 0).then(|| self.scan(key)).flatten();
        };
        by_key.find(hash, |index| self.holds(*index as usize, key)).map(|index| *index as usize)
    }

    /// Appends a record to the log and its bytes, and indexes it.
    fn push(&mut self, key: &str, value: &str, version: u64, status: ValueStatus, hash: u64) {
        let len = key.len() + value.len();
        grow_bytes(&mut self.bytes, len);
        grow(&mut self.log, 1);
        let index = self.log.len() as u32;
        self.log.push(Slot::new(version, self.bytes.len(), key.len(), status));
        self.bytes.push_str(key);
        self.bytes.push_str(value);
        self.records += 1;
        self.reserved += u32::from(is_reserved(key));
        self.held_bytes += record_cost(len);
        if let Some(by_key) = &mut self.by_key {
            let (log, bytes) = (&self.log, &self.bytes);
            by_key.insert_unique(hash, index, |index| hash_key_at(log, bytes, *index as usize));
        } else {
            self.key_filter |= key_bit(hash);
        }
    }

    /// Whether holes, or their bytes, are numerous enough to compact the log,
    /// or the store large enough to need an index it lacks.
    fn needs_compaction(&self) -> bool {
        self.holes as usize > self.log.len() / 2 + 8
            || self.garbage > (self.bytes.len() - self.garbage) / 4 + 256
            || (self.by_key.is_none() && self.records as usize > INDEX_THRESHOLD)
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
        let record = self.record_at(index)?;
        let (versioned, len, reserved) = (record.to_versioned(), record.len(), is_reserved(record.key));
        if let Some(by_key) = &mut self.by_key
            && let Ok(found) = by_key.find_entry(hash, |at| *at as usize == index)
        {
            found.remove();
        }
        self.log[index].make_hole();
        self.holes += 1;
        self.garbage += len;
        self.records -= 1;
        self.reserved -= u32::from(reserved);
        self.held_bytes -= record_cost(len);
        Some(versioned)
    }

    /// Drops the holes and their bytes, and rebuilds the key index (if the
    /// store is large enough to need one).
    fn compact(&mut self) {
        self.reindex_for(0);
    }

    /// Puts the log in version order (a reset applied records below ones
    /// held), its bytes with it, dropping the holes; rebuilds the index.
    fn sort_by_version(&mut self) {
        let mut order: Vec<u32> =
            (0..self.log.len() as u32).filter(|&index| self.log[index as usize].is_live()).collect();
        order.sort_by_key(|&index| self.log[index as usize].version);
        self.relay(&order);
        self.reindex_for(0);
    }

    /// Rebuilds the log and its bytes from the slots at `order`, in that order.
    fn relay(&mut self, order: &[u32]) {
        let mut log = Vec::with_capacity(order.len());
        let mut bytes = String::with_capacity(self.bytes.len() - self.garbage);
        for &index in order {
            let index = index as usize;
            let slot = self.log[index];
            let record = &self.bytes[slot.start as usize..self.end(index)];
            log.push(Slot { start: bytes.len() as u32, ..slot });
            bytes.push_str(record);
        }
        self.log = log;
        self.bytes = bytes;
        self.holes = 0;
        self.garbage = 0;
    }

    /// Drops the holes and their bytes, and rebuilds the key index if the
    /// store, with `coming` more records, is large enough to need one.
    fn reindex_for(&mut self, coming: usize) {
        if self.holes > 0 || self.garbage > 0 {
            let live: Vec<u32> =
                (0..self.log.len() as u32).filter(|&index| self.log[index as usize].is_live()).collect();
            self.relay(&live);
        }
        if self.records as usize + coming <= INDEX_THRESHOLD {
            self.by_key = None;
            self.key_filter = (0..self.log.len())
                .fold(0, |filter, index| filter | key_bit(hash_key_at(&self.log, &self.bytes, index)));
            return;
        }
        self.key_filter = 0;
        let by_key = self.by_key.get_or_insert_default();
        by_key.clear();
        let (log, bytes) = (&self.log, &self.bytes);
        // Room for the records coming too: a section of a peer's state fills
        // the index at once, not by doubling it.
        let key_of = |index: &u32| hash_key_at(log, bytes, *index as usize);
        by_key.reserve(self.records as usize + coming, key_of);
        for index in 0..log.len() {
            by_key.insert_unique(hash_key_at(log, bytes, index), index as u32, key_of);
        }
    }
}

/// Makes room in `vec` for `additional` more items: exactly that many if
/// they are at least a quarter of what it holds, else a quarter more (at
/// least 4). A store's log and bytes grow by a quarter, not by doubling: a
/// large state wastes at most a fifth of what it holds, for a copy of each
/// item five times over on average while it grows one record at a time.
fn grow<T>(vec: &mut Vec<T>, additional: usize) {
    if vec.capacity() - vec.len() < additional {
        vec.reserve_exact(additional.max(vec.len() / 4).max(4));
    }
}

/// The bit of [`Store::key_filter`] of a key hashed `hash` (by its top six
/// bits: the index's buckets use the low ones).
fn key_bit(hash: u64) -> u64 {
    1 << (hash >> 58)
}

/// [`grow`] for a store's bytes (at least 64 bytes at a time).
fn grow_bytes(bytes: &mut String, additional: usize) {
    if bytes.capacity() - bytes.len() < additional {
        bytes.reserve_exact(additional.max(bytes.len() / 4).max(64));
    }
}

/// Whether `slot` holds a record of `key`, its key read in `bytes`. Keys of
/// one state often share their length and a prefix (`shard-07`,
/// `shard-08`): their last bytes are compared before the whole keys.
fn slot_holds(bytes: &[u8], slot: &Slot, key: &[u8]) -> bool {
    let start = slot.start as usize;
    slot.is_live() && slot.key_len() == key.len() && {
        let held = &bytes[start..start + key.len()];
        held.last() == key.last() && held == key
    }
}

/// [`hash_key`] of the key of the slot at `index` (the index's rehash).
fn hash_key_at(log: &[Slot], bytes: &str, index: usize) -> u64 {
    let slot = &log[index];
    let start = slot.start as usize;
    hash_key_bytes(&bytes.as_bytes()[start..start + slot.key_len()])
}

/// What one record costs against [`crate::Config::max_remote_state_bytes`],
/// beyond its key and value bytes: its log slot (16 bytes), its share of the
/// key index and of the garbage-collection queue, and of the room a store
/// keeps to grow and the holes it tolerates before compacting (a quarter of
/// its bytes each, at most). A round figure that makes many tiny records
/// count too.
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
    log[index].is_live().then_some(index)
}

/// A wire record's value and status.
fn update_value(update: &KeyValueUpdate) -> (&str, ValueStatus) {
    match &update.value {
        ValueUpdate::Set(value) => (value.as_str(), ValueStatus::Set),
        ValueUpdate::SetWithTtl(value) => (value.as_str(), ValueStatus::SetWithTtl),
        ValueUpdate::Deleted => ("", ValueStatus::Deleted),
    }
}

#[cfg(test)]
mod tests;
