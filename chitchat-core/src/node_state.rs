//! One node's versioned key-value state, as its owner or a peer holds it.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;
use crate::message::{KeyValueUpdate, ValueUpdate};
use crate::time::Timestamp;

/// The status of a key's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The state of one node: identity, heartbeat and versioned keys.
///
/// Memory is bounded by [`crate::Config::max_keys_per_node`] records plus an
/// index of the same size, and a garbage-collection queue of at most twice as
/// many entries.
#[derive(Clone, Debug)]
pub struct NodeState {
    id: NodeId,
    heartbeat: u64,
    max_version: u64,
    last_gc_version: u64,
    left: bool,
    key_values: BTreeMap<String, VersionedValue>,
    /// Version → key, for every record: a delta reads only what it sends.
    by_version: BTreeMap<u64, String>,
    /// Tombstones and expiring keys, in the order this node learned of them.
    pending_gc: VecDeque<(Timestamp, u64)>,
}

impl NodeState {
    pub(crate) fn new(id: NodeId) -> Self {
        NodeState {
            id,
            heartbeat: 0,
            max_version: 0,
            last_gc_version: 0,
            left: false,
            key_values: BTreeMap::new(),
            by_version: BTreeMap::new(),
            pending_gc: VecDeque::new(),
        }
    }

    /// The node's identity.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The node's heartbeat: a counter its owner bumps every gossip round.
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

    /// The value of `key`, unless absent or deleted.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.key_values.get(key).filter(|record| record.is_visible()).map(|record| record.value.as_str())
    }

    /// The record of `key`, tombstones included.
    pub fn get_versioned(&self, key: &str) -> Option<&VersionedValue> {
        self.key_values.get(key)
    }

    /// The visible keys and values, in key order.
    pub fn key_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.key_values
            .iter()
            .filter(|(_, record)| record.is_visible())
            .map(|(key, record)| (key.as_str(), record.value.as_str()))
    }

    /// Every record, tombstones included, in key order.
    pub fn records(&self) -> impl Iterator<Item = (&str, &VersionedValue)> {
        self.key_values.iter().map(|(key, record)| (key.as_str(), record))
    }

    /// Visible keys starting with `prefix`.
    pub fn key_values_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.key_values
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .filter(|(_, record)| record.is_visible())
            .map(|(key, record)| (key.as_str(), record.value.as_str()))
    }

    /// Number of records, tombstones included.
    pub fn num_records(&self) -> usize {
        self.key_values.len()
    }

    pub(crate) fn set_heartbeat(&mut self, heartbeat: u64) {
        self.heartbeat = self.heartbeat.max(heartbeat);
    }

    /// The owner changes a key. Returns whether anything changed (setting the same
    /// value with the same status again bumps no version).
    pub(crate) fn set_own(&mut self, key: &str, value: &str, status: ValueStatus, now: Timestamp) -> bool {
        if let Some(record) = self.key_values.get(key) {
            let same_value = status == ValueStatus::Deleted || record.value == value;
            if record.status == status && same_value {
                return false;
            }
        }
        let version = self.max_version + 1;
        let value = if status == ValueStatus::Deleted { String::new() } else { value.to_string() };
        self.insert_record(key.to_string(), VersionedValue { value, version, status }, now);
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
    pub(crate) fn apply_record(
        &mut self,
        update: &KeyValueUpdate,
        now: Timestamp,
    ) -> Option<Option<VersionedValue>> {
        if let Some(current) = self.key_values.get(&update.key)
            && current.version >= update.version
        {
            return None;
        }
        let (value, status) = match &update.value {
            ValueUpdate::Set(value) => (value.clone(), ValueStatus::Set),
            ValueUpdate::SetWithTtl(value) => (value.clone(), ValueStatus::SetWithTtl),
            ValueUpdate::Deleted => (String::new(), ValueStatus::Deleted),
        };
        let previous = self.insert_record(
            update.key.clone(),
            VersionedValue { value, version: update.version, status },
            now,
        );
        Some(previous)
    }

    fn insert_record(
        &mut self,
        key: String,
        record: VersionedValue,
        now: Timestamp,
    ) -> Option<VersionedValue> {
        let version = record.version;
        if record.status != ValueStatus::Set {
            self.pending_gc.push_back((now, version));
        }
        self.by_version.insert(version, key.clone());
        self.max_version = self.max_version.max(version);
        let previous = self.key_values.insert(key, record);
        if let Some(previous) = &previous {
            self.by_version.remove(&previous.version);
        }
        // Entries for overwritten records linger until collected; compact the queue
        // when they would outnumber the records.
        if self.pending_gc.len() > 2 * self.key_values.len() + 16 {
            let by_version = &self.by_version;
            self.pending_gc.retain(|(_, version)| by_version.contains_key(version));
        }
        previous
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
        let versions: Vec<u64> = self.by_version.range(..=version).map(|(version, _)| *version).collect();
        let mut taken = Vec::with_capacity(versions.len());
        for version in versions {
            if let Some(key) = self.by_version.remove(&version)
                && let Some(record) = self.key_values.remove(&key)
            {
                taken.push((key, record));
            }
        }
        taken
    }

    /// Sets the versions after a reset: the max may go down (the reset was cut
    /// short and versions above it must be fetched again).
    pub(crate) fn set_versions(&mut self, max_version: u64, last_gc_version: u64) {
        self.max_version = max_version;
        self.last_gc_version = self.last_gc_version.max(last_gc_version);
    }

    /// Records with a version above `from_version`, in increasing version order.
    pub(crate) fn records_since(&self, from_version: u64) -> impl Iterator<Item = (&str, &VersionedValue)> {
        self.by_version
            .range(from_version.saturating_add(1)..)
            .filter_map(|(_, key)| self.key_values.get_key_value(key))
            .map(|(key, record)| (key.as_str(), record))
    }

    /// Removes the tombstones and expiring keys marked at least `grace_period`
    /// before `now`.
    pub(crate) fn collect_garbage(&mut self, now: Timestamp, grace_period: Duration) -> Vec<Collected> {
        let mut collected = Vec::new();
        while let Some(&(marked_at, version)) = self.pending_gc.front() {
            if marked_at + grace_period > now {
                break;
            }
            self.pending_gc.pop_front();
            let Some(key) = self.by_version.get(&version).cloned() else {
                continue; // overwritten since
            };
            let Some(record) = self.key_values.get(&key) else { continue };
            if record.status == ValueStatus::Set {
                continue;
            }
            let expired = record.status == ValueStatus::SetWithTtl;
            self.key_values.remove(&key);
            self.by_version.remove(&version);
            self.last_gc_version = self.last_gc_version.max(version);
            collected.push(Collected { key, expired });
        }
        collected
    }

    /// Size of the garbage-collection queue (for bound checks).
    #[cfg(test)]
    pub(crate) fn pending_gc_len(&self) -> usize {
        self.pending_gc.len()
    }
}

/// A [`VersionedValue`] as a wire record.
pub(crate) fn to_update(key: &str, record: &VersionedValue) -> KeyValueUpdate {
    let value = match record.status {
        ValueStatus::Set => ValueUpdate::Set(record.value.clone()),
        ValueStatus::SetWithTtl => ValueUpdate::SetWithTtl(record.value.clone()),
        ValueStatus::Deleted => ValueUpdate::Deleted,
    };
    KeyValueUpdate { key: key.to_string(), version: record.version, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> NodeState {
        NodeState::new(NodeId::new("a", 1, "127.0.0.1:1".parse().unwrap()))
    }

    const T0: Timestamp = Timestamp::ZERO;

    #[test]
    fn setting_the_same_value_bumps_no_version() {
        let mut node = state();
        assert!(node.set_own("k", "v", ValueStatus::Set, T0));
        assert!(!node.set_own("k", "v", ValueStatus::Set, T0));
        assert_eq!(node.max_version(), 1);
        assert!(node.set_own("k", "w", ValueStatus::Set, T0));
        assert_eq!(node.get_versioned("k").unwrap().version, 2);
        assert!(node.set_own("k", "", ValueStatus::Deleted, T0));
        assert!(!node.set_own("k", "", ValueStatus::Deleted, T0));
        assert_eq!(node.get("k"), None);
        assert_eq!(node.max_version(), 3);
    }

    #[test]
    fn records_since_reads_only_newer_records_in_version_order() {
        let mut node = state();
        node.set_own("a", "1", ValueStatus::Set, T0);
        node.set_own("b", "1", ValueStatus::Set, T0);
        node.set_own("a", "2", ValueStatus::Set, T0);
        let since: Vec<_> = node.records_since(1).map(|(key, record)| (key, record.version)).collect();
        assert_eq!(since, vec![("b", 2), ("a", 3)]);
        assert_eq!(node.records_since(3).count(), 0);
    }

    #[test]
    fn tombstones_and_ttl_keys_are_collected_after_the_grace_period() {
        let mut node = state();
        let grace = Duration::from_secs(10);
        node.set_own("gone", "x", ValueStatus::Set, T0);
        node.set_own("gone", "", ValueStatus::Deleted, Timestamp::from_millis(1_000));
        node.set_own("ttl", "y", ValueStatus::SetWithTtl, Timestamp::from_millis(2_000));
        node.set_own("kept", "z", ValueStatus::Set, T0);
        assert!(node.collect_garbage(Timestamp::from_millis(10_999), grace).is_empty());
        let collected = node.collect_garbage(Timestamp::from_millis(12_000), grace);
        assert_eq!(
            collected,
            vec![
                Collected { key: "gone".into(), expired: false },
                Collected { key: "ttl".into(), expired: true }
            ]
        );
        assert_eq!(node.last_gc_version(), 3);
        assert_eq!(node.get("kept"), Some("z"));
        assert_eq!(node.num_records(), 1);
    }

    #[test]
    fn a_key_set_again_before_expiry_is_not_collected() {
        let mut node = state();
        node.set_own("k", "v", ValueStatus::SetWithTtl, T0);
        node.set_own("k", "v", ValueStatus::Set, T0);
        assert!(node.collect_garbage(Timestamp::from_millis(1_000_000), Duration::from_secs(1)).is_empty());
        assert_eq!(node.get("k"), Some("v"));
    }

    #[test]
    fn gc_queue_stays_bounded_under_churn() {
        let mut node = state();
        for round in 0..10_000u64 {
            node.set_own("k", &round.to_string(), ValueStatus::SetWithTtl, T0);
        }
        assert!(node.pending_gc_len() <= 2 * node.num_records() + 17);
    }

    #[test]
    fn prefix_scan_handles_multi_byte_keys() {
        let mut node = state();
        node.set_own("é/1", "a", ValueStatus::Set, T0);
        node.set_own("é/2", "b", ValueStatus::Set, T0);
        node.set_own("f", "c", ValueStatus::Set, T0);
        let found: Vec<_> = node.key_values_with_prefix("é/").collect();
        assert_eq!(found, vec![("é/1", "a"), ("é/2", "b")]);
    }
}
