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
    let since: Vec<_> =
        node.records_since(1).map(|record| (record.key.to_string(), record.version)).collect();
    assert_eq!(since, vec![("b".to_string(), 2), ("a".to_string(), 3)]);
    assert_eq!(node.records_since(3).count(), 0);
}

/// The lengths a delta counts from the log are those its records take on
/// the wire, holes (overwritten records) skipped, for every status and for
/// keys, values and versions past a varint's first byte.
#[test]
fn record_lens_since_are_the_encoded_lengths_of_records_since() {
    let mut node = state();
    let long = "é".repeat(100);
    for round in 0..200 {
        let key = format!("key-{}", round % 9);
        let (value, status) = match round % 4 {
            0 => (long.as_str(), ValueStatus::Set),
            1 => ("v", ValueStatus::SetWithTtl),
            2 => ("", ValueStatus::Deleted),
            _ => ("", ValueStatus::Set),
        };
        node.set_own(if round % 5 == 0 { &long } else { &key }, value, status, T0);
    }
    assert!(node.max_version() > 128);
    for from in [0, 1, 60, node.max_version()] {
        let encoded: Vec<(u64, usize)> = node
            .records_since(from)
            .map(|record| (record.version, crate::wire::size::encoded_len(&record)))
            .collect();
        assert_eq!(node.record_lens_since(from).collect::<Vec<_>>(), encoded, "from {from}");
    }
}

#[test]
fn a_reset_below_held_records_is_applied_in_one_sort_and_stays_consistent() {
    // Held: 300 records above the reset's watermark (some with TTL, so that
    // the GC queue has entries); the reset brings 2,000 records all below
    // them, and overwrites one held key with a newer version.
    let mut node = state();
    let held: Vec<KeyValueUpdate> = (3_001..=3_300)
        .map(|version| KeyValueUpdate {
            key: format!("held-{version}").into(),
            version,
            value: if version % 2 == 0 {
                ValueUpdate::SetWithTtl("t".into())
            } else {
                ValueUpdate::Set("h".into())
            },
        })
        .collect();
    for update in &held {
        node.apply_record(update, T0);
    }
    node.finish_section(3_300, 0, false);
    let mut reset: Vec<KeyValueUpdate> = (1..=2_000)
        .map(|version| KeyValueUpdate {
            key: format!("r-{version}").into(),
            version,
            value: ValueUpdate::Set("v".into()),
        })
        .collect();
    reset.push(KeyValueUpdate { key: "held-3001".into(), version: 2_999, value: ValueUpdate::Deleted });
    let limits = RecordLimits { max_key_len: 64, max_value_len: 64, max_keys: 10_000, max_bytes: usize::MAX };
    assert_eq!(node.apply_reset_records(&reset, T0, &limits), Skipped::default());
    assert_eq!(node.num_records(), 2_300, "the older record of held-3001 does not replace the newer");
    assert_eq!(node.get("r-1"), Some("v"));
    assert_eq!(node.get("r-2000"), Some("v"));
    assert_eq!(node.get("held-3001"), Some("h"));
    // The log is in version order again: reads by version see every record once, in order.
    let versions: Vec<u64> = node.records_since(0).map(|record| record.version).collect();
    assert_eq!(versions.len(), 2_300);
    assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
    // And garbage collection still finds the TTL records by version.
    let collected = node.collect_garbage(T0 + Duration::from_secs(10), Duration::from_secs(1));
    assert_eq!(collected.len(), 150);
    assert_eq!(node.num_records(), 2_150);
}

#[test]
fn republishing_moves_every_record_above_the_claim_and_keeps_expiry() {
    let mut node = state();
    node.set_own("a", "1", ValueStatus::Set, T0);
    node.set_own("b", "2", ValueStatus::SetWithTtl, T0);
    node.set_own("a", "3", ValueStatus::Set, T0);
    node.set_own("c", "", ValueStatus::Deleted, T0);
    node.republish_above(1_000);
    assert_eq!(node.last_gc_version(), 1_000);
    let records: Vec<(String, u64)> =
        node.records_since(0).map(|record| (record.key.to_string(), record.version)).collect();
    assert_eq!(records, [("b".to_string(), 1_001), ("a".to_string(), 1_002), ("c".to_string(), 1_003)]);
    assert_eq!(node.max_version(), 1_003);
    assert_eq!((node.get("a"), node.get("b"), node.get("c")), (Some("3"), Some("2"), None));
    // The TTL key and the tombstone are still collected, under their new versions.
    let collected = node.collect_garbage(T0 + Duration::from_secs(10), Duration::from_secs(1));
    let keys: Vec<&str> = collected.iter().map(|collected| collected.key.as_str()).collect();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(node.last_gc_version(), 1_003);
    node.set_own("d", "4", ValueStatus::Set, T0);
    assert_eq!(node.get_versioned("d").unwrap().version, 1_004);
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

/// A state holds a record store only while it has records: none at first,
/// one once a record comes, none again once garbage collection took the
/// last one; reads of a state without one see no records.
#[test]
fn the_record_store_comes_with_the_first_version() {
    let mut node = state();
    assert!(node.store.is_none());
    assert_eq!((node.num_records(), node.held_bytes(), node.records_since(0).count()), (0, 0, 0));
    node.finish_section(0, 0, false);
    node.set_versions(0, 0);
    node.set_heartbeat(0);
    assert!(node.store.is_none(), "a section that takes the state nowhere makes no store");
    let mut beating = state();
    beating.set_heartbeat(3);
    beating.set_heartbeat(2);
    assert_eq!(beating.heartbeat(), 3, "a heartbeat never goes down");
    assert!(beating.store.is_some());
    node.set_own("k", "v", ValueStatus::Set, T0);
    assert!(node.store.is_some());
    node.set_own("k", "", ValueStatus::Deleted, T0);
    assert!(node.store.is_some(), "a tombstone is a record");
    let later = T0 + Duration::from_secs(10);
    let collected = node.collect_garbage(later, Duration::from_secs(1));
    assert_eq!(collected.len(), 1);
    assert!(node.store.is_some(), "the versions stay");
    assert_eq!((node.num_records(), node.held_bytes(), node.last_gc_version()), (0, 0, 2));
    assert_eq!(node.max_version(), 2);
    let mut versions_only = state();
    versions_only.finish_section(4, 3, false);
    assert_eq!((versions_only.max_version(), versions_only.last_gc_version()), (4, 3));
    versions_only.set_versions(0, 0);
    assert_eq!((versions_only.max_version(), versions_only.last_gc_version()), (0, 3));
    assert!(versions_only.store.is_some());
    node.republish_above(5);
    assert_eq!((node.max_version(), node.last_gc_version()), (6, 5));
    node.set_own("k", "w", ValueStatus::Set, T0);
    assert_eq!(node.get_versioned("k").map(|record| record.version), Some(7));
}

/// `NodeState`'s documentation counts a 16-byte slot, and
/// `RECORD_OVERHEAD` covers it with its share of index and GC queue: keep
/// them in step.
/// A key's hash is keyed by a seed of the process, so keys cannot be chosen
/// offline to share one bucket of an index; it is stable within the process.
#[test]
fn keys_are_hashed_with_a_seed() {
    for key in ["a", "key-01", "service-01", "\0dead:0000000000000000"] {
        assert_ne!(hash_key(key), xxhash_rust::xxh3::xxh3_64(key.as_bytes()), "{key:?}");
        assert_eq!(hash_key(key), hash_key_bytes(key.as_bytes()));
    }
}

#[test]
fn a_log_slot_is_16_bytes() {
    assert_eq!(std::mem::size_of::<Slot>(), 16);
    const { assert!(RECORD_OVERHEAD >= 16 + 16) };
}

/// A state never grows past `MAX_STATE_BYTES` (its bytes are addressed by
/// 32-bit offsets): a peer's record that would take it there is refused as
/// over budget whatever the budget, and the owner is told it has no room.
#[test]
fn a_state_stops_at_its_hard_cap_whatever_the_budget() {
    let mut node = state();
    node.set_own("k", "v", ValueStatus::Set, T0);
    let held = node.held_bytes();
    node.store.as_mut().unwrap().held_bytes = MAX_STATE_BYTES - 100;
    assert!(!node.has_room_for("big", 100));
    assert!(node.has_room_for("k", 1), "replacing a record by one of its size fits");
    let limits = RecordLimits { max_key_len: 64, max_value_len: 1_000, max_keys: 10, max_bytes: usize::MAX };
    let update =
        KeyValueUpdate { key: "big".into(), version: 9, value: ValueUpdate::Set("x".repeat(100).into()) };
    assert_eq!(node.refusal(&update, &limits), Some(Refusal::OverBudget));
    assert_eq!(node.apply_record_within(&update, T0, &limits, false), Err(Refusal::OverBudget));
    node.store.as_mut().unwrap().held_bytes = held;
    assert_eq!(node.refusal(&update, &limits), None);
}

/// A section's records get room made for them at once only if they all fit
/// the limits: a flood of records over budget leaves no reserved memory
/// behind (which the budget would not count), and a state that took none of
/// them holds no store once the section ends.
#[test]
fn no_room_is_made_for_records_that_will_be_refused() {
    let updates: Vec<KeyValueUpdate> = (1..=10)
        .map(|version| KeyValueUpdate {
            key: format!("k{version}").into(),
            version,
            value: ValueUpdate::Set("x".repeat(100).into()),
        })
        .collect();
    let roomy = RecordLimits { max_key_len: 64, max_value_len: 1_000, max_keys: 100, max_bytes: 10_000 };
    let mut node = state();
    node.reserve(&updates, 0, &roomy);
    let store = node.store.as_ref().expect("room made");
    assert_eq!((store.log.capacity(), store.bytes.capacity()), (10, 10 * 100 + 9 * 2 + 3));

    let tight = RecordLimits { max_bytes: 500, ..roomy };
    let mut node = state();
    node.reserve(&updates, 0, &tight);
    assert!(node.store.is_none(), "ten records of 100 bytes do not fit 500");
    let taken =
        updates.iter().filter(|update| node.apply_record_within(update, T0, &tight, false).is_ok()).count();
    node.finish_section(10, 0, false);
    assert_eq!(taken, 3);
    assert!(node.store.as_ref().unwrap().bytes.capacity() < 500);

    let none = RecordLimits { max_bytes: 0, ..roomy };
    let mut node = state();
    node.reserve(&updates, 0, &none);
    assert!(updates.iter().all(|update| node.apply_record_within(update, T0, &none, false).is_err()));
    node.finish_section(10, 0, false);
    let store = node.store.as_ref().expect("the versions");
    assert_eq!(
        (store.log.capacity(), store.bytes.capacity()),
        (0, 0),
        "a state that took no record has no room for one"
    );
    assert_eq!(node.max_version(), 10);
}

/// The record store (a log of slots over one string of keys and values,
/// with holes, compaction, an index past a threshold, and a sort after a
/// reset) holds exactly what a plain map of key to record would, and keeps
/// its own books: on any sequence of records, overwrites, deletions,
/// collections, resets and re-publications.
mod against_a_model {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Set { key: u8, len: usize, kind: u8 },
        Apply { key: u8, version: u64, len: usize, kind: u8 },
        Collect,
        TakeUpTo(u64),
        Republish,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..60u8, 0..40usize, 0..4u8).prop_map(|(key, len, kind)| Op::Set { key, len, kind }),
            4 => (0..60u8, 1..400u64, 0..40usize, 0..4u8)
                .prop_map(|(key, version, len, kind)| Op::Apply { key, version, len, kind }),
            1 => Just(Op::Collect),
            1 => (0..400u64).prop_map(Op::TakeUpTo),
            1 => Just(Op::Republish),
        ]
    }

    fn key(key: u8) -> String {
        // Keys of several lengths, some multi-byte.
        format!("{}{key}", "é".repeat(usize::from(key % 3)))
    }

    fn value(len: usize, kind: u8) -> (String, ValueStatus) {
        match kind {
            0 => (String::new(), ValueStatus::Deleted),
            1 => ("t".repeat(len), ValueStatus::SetWithTtl),
            _ => ("v".repeat(len), ValueStatus::Set),
        }
    }

    /// The store's own books: slots tile its bytes in order, holes and their
    /// bytes are counted, counts and held bytes add up, the index finds every
    /// live record, and the log is in version order.
    fn check_books(node: &NodeState) {
        let Some(store) = &node.store else { return };
        assert!(
            store.records > 0
                || store.left
                || (store.heartbeat, store.max_version, store.last_gc_version) != (0, 0, 0),
            "a store that holds nothing is dropped"
        );
        let mut next = 0;
        let (mut holes, mut garbage, mut records, mut held) = (0, 0, 0, 0);
        for (index, slot) in store.log.iter().enumerate() {
            assert_eq!(slot.start as usize, next, "slot {index} starts where the previous ends");
            let len = store.record_len(index);
            assert!(slot.key_len() <= len);
            next += len;
            if slot.is_live() {
                records += 1;
                held += record_cost(len);
                let key = store.record_at(index).unwrap().key;
                assert_eq!(store.find(key), Some(index));
                assert_eq!(store.find_hashed(key, hash_key(key)), Some(index));
            } else {
                holes += 1;
                garbage += len;
            }
        }
        assert_eq!(next, store.bytes.len());
        assert_eq!(
            (holes, garbage, records, held),
            (store.holes, store.garbage, store.records, store.held_bytes)
        );
        assert!(store.log.windows(2).all(|pair| pair[0].version < pair[1].version));
        match &store.by_key {
            Some(by_key) => assert_eq!(by_key.len(), records as usize),
            None => assert!(records as usize <= INDEX_THRESHOLD, "a store past the threshold is indexed"),
        }
    }

    proptest! {
        #[test]
        fn holds_what_a_map_holds(ops in prop::collection::vec(op(), 0..150)) {
            let mut node = state();
            let mut model: BTreeMap<String, (String, ValueStatus)> = BTreeMap::new();
            let mut now = T0;
            // A version names one record of its owner: a record received
            // never reuses one.
            let mut used = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    Op::Set { key: k, len, kind } => {
                        let (v, status) = value(len, kind);
                        if status == ValueStatus::Deleted && !model.contains_key(&key(k)) {
                            continue;
                        }
                        node.set_own(&key(k), &v, status, now);
                        used.insert(node.max_version());
                        model.insert(key(k), (v, status));
                    }
                    Op::Apply { key: k, version, len, kind } => {
                        if !used.insert(version) {
                            continue;
                        }
                        let (v, status) = value(len, kind);
                        let update = KeyValueUpdate {
                            key: key(k).into(),
                            version,
                            value: match status {
                                ValueStatus::Set => ValueUpdate::Set(v.clone().into()),
                                ValueStatus::SetWithTtl => ValueUpdate::SetWithTtl(v.clone().into()),
                                ValueStatus::Deleted => ValueUpdate::Deleted,
                            },
                        };
                        let newer = node.get_versioned(&key(k)).is_none_or(|held| held.version < version);
                        let outcome = node.apply_record(&update, now);
                        prop_assert_eq!(outcome.is_some(), newer);
                        if newer {
                            model.insert(key(k), (v, status));
                        }
                    }
                    Op::Collect => {
                        now += Duration::from_secs(10);
                        for collected in node.collect_garbage(now, Duration::from_secs(5)) {
                            prop_assert!(model.remove(&collected.key).is_some());
                        }
                    }
                    Op::TakeUpTo(version) => {
                        for (key, _) in node.take_records_up_to(version) {
                            prop_assert!(model.remove(&key).is_some());
                        }
                    }
                    Op::Republish => {
                        let above = node.max_version() + 3;
                        node.republish_above(above);
                        used.extend(above..=node.max_version());
                    }
                }
                check_books(&node);
                let held: Vec<(String, String, ValueStatus)> = node
                    .records()
                    .map(|(key, record)| (key.to_string(), record.value, record.status))
                    .collect();
                let expected: Vec<(String, String, ValueStatus)> =
                    model.iter().map(|(key, (value, status))| (key.clone(), value.clone(), *status)).collect();
                prop_assert_eq!(held, expected);
            }
        }
    }
}

/// The path of a peer's records, which looks each key up once, takes the
/// same records, refuses the same ones and leaves the same state as asking
/// for a refusal and then applying: on any sequence of records, across the
/// index threshold, overwrites, deletions, old versions and limits.
mod one_lookup {
    use super::*;
    use proptest::prelude::*;

    fn update() -> impl Strategy<Value = KeyValueUpdate> {
        (0..40u8, 1..200u64, 0..4u8, 0..12usize).prop_map(|(key, version, kind, len)| KeyValueUpdate {
            key: format!("key-{key}").into(),
            version,
            value: match kind {
                0 => ValueUpdate::Deleted,
                1 => ValueUpdate::SetWithTtl("t".repeat(len).into()),
                _ => ValueUpdate::Set("v".repeat(len).into()),
            },
        })
    }

    proptest! {
        #[test]
        fn agrees_with_refusal_then_apply(updates in prop::collection::vec(update(), 0..120), max_keys in 1..50usize, max_bytes in 500..4_000usize) {
            let limits = RecordLimits { max_key_len: 64, max_value_len: 10, max_keys, max_bytes };
            let (mut one, mut two) = (state(), state());
            for update in &updates {
                let got = one.apply_record_within(update, T0, &limits, false);
                let expected = match two.refusal(update, &limits) {
                    Some(refusal) => Err(refusal),
                    None => Ok(two.apply_record(update, T0)),
                };
                prop_assert_eq!(&got, &expected);
                prop_assert_eq!(one.records().collect::<Vec<_>>(), two.records().collect::<Vec<_>>());
                prop_assert_eq!(one.held_bytes(), two.held_bytes());
                prop_assert_eq!(one.max_version(), two.max_version());
                prop_assert_eq!(one.pending_gc_len(), two.pending_gc_len());
            }
        }

        /// Distinct keys applied to a state that held no record (a section
        /// for a node just met) skip the lookup and leave what it would.
        #[test]
        fn skipping_the_lookup_of_absent_keys_changes_nothing(updates in prop::collection::vec(update(), 0..120), max_keys in 1..50usize, max_bytes in 500..4_000usize) {
            let limits = RecordLimits { max_key_len: 64, max_value_len: 10, max_keys, max_bytes };
            let mut seen = std::collections::HashSet::new();
            let (mut one, mut two) = (state(), state());
            for update in updates.iter().filter(|update| seen.insert(update.key.clone())) {
                let got = one.apply_record_within(update, T0, &limits, true);
                prop_assert_eq!(&got, &two.apply_record_within(update, T0, &limits, false));
                prop_assert_eq!(one.records().collect::<Vec<_>>(), two.records().collect::<Vec<_>>());
                prop_assert_eq!(one.held_bytes(), two.held_bytes());
                prop_assert_eq!(one.max_version(), two.max_version());
                prop_assert_eq!(one.pending_gc_len(), two.pending_gc_len());
            }
        }
    }
}
