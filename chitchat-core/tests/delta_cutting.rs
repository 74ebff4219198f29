//! Cutting a delta to its datagram: a node answers a crafted `Syn` (or
//! `SynAck`) whose digest says what the peer holds, and its answer is decoded
//! and applied to a second node. The answer always fits `max_datagram_size`; a
//! section cut in the middle says how far it goes, and its receiver advances
//! exactly that far; unknown nodes come first, then the largest version gaps; a
//! delta that fits is not cut, not even by a byte; a node of which nothing fits
//! is left out rather than sent empty; a peer behind the sender's garbage
//! collection gets a reset from version 0.

use std::net::SocketAddr;

use chitchat_core::testing::Tracked;
use chitchat_core::testing::datagrams::{ack, empty_digest, full, full_with, known, syn};
use chitchat_core::testing::validate_peer;
use chitchat_core::wire::{
    Delta, Digest, DigestEntry, KeyValueUpdate, Message, NodeDelta, NodeRef, ValueUpdate,
};
use chitchat_core::{Chitchat, Config, NodeId, NodeStatus, Timestamp, wire};
use proptest::prelude::*;

const CLUSTER: &str = "cutting";
const T0: Timestamp = Timestamp::ZERO;
/// The longest value the nodes accept: the largest that a 512-byte datagram
/// still guarantees room for.
const MAX_VALUE_LEN: usize = 96;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(max_datagram_size: usize) -> Config {
    Config {
        cluster_id: CLUSTER.into(),
        max_datagram_size,
        max_key_len: 16,
        max_value_len: MAX_VALUE_LEN,
        max_node_name_len: 16,
        max_cluster_id_len: 16,
        ..Config::local_test()
    }
}

fn peer(i: u16) -> NodeId {
    NodeId::new(format!("peer-{i}"), 1, addr(7100 + i))
}

/// The node whose answers are checked, at `addr(7000)`, with one key of its own.
/// It knows the [`receiver`], whose address it validated, so that its answers
/// there get the whole datagram (the peer's digests list the receiver as known).
fn sender(max_datagram_size: usize) -> Chitchat {
    let id = NodeId::new("sender", 1, addr(7000));
    let mut node = Chitchat::new(config(max_datagram_size), id, [("own", "x")], T0).unwrap();
    validate_peer(&mut node, T0, &NodeId::new("receiver", 1, addr(7001)));
    drain(&mut node);
    node
}

/// A node that applies the sender's answers, at `addr(7001)`.
fn receiver() -> Chitchat {
    let id = NodeId::new("receiver", 1, addr(7001));
    let mut node = Chitchat::new(config(1_400), id, Vec::<(String, String)>::new(), T0).unwrap();
    drain(&mut node);
    node
}

fn drain(node: &mut Chitchat) {
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
}

/// `count` records `key-1` to `key-{count}` at versions 1 to `count`, each
/// value `value_len` bytes long.
fn filler(count: u64, value_len: usize) -> Vec<KeyValueUpdate> {
    (1..=count)
        .map(|version| KeyValueUpdate {
            key: format!("key-{version}").into(),
            version,
            value: ValueUpdate::Set("v".repeat(value_len).into()),
        })
        .collect()
}

/// Introduces `id` to `node` with `key_values`, then a heartbeat from the node
/// itself: it is live, and so may be introduced to others.
fn teach(node: &mut Chitchat, id: &NodeId, key_values: Vec<KeyValueUpdate>) {
    let section = full_with(id.clone(), 1, key_values);
    let max = section.max_version;
    // From the validated receiver, so that the sender relays the node.
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![section])).unwrap();
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![known(id, max, max, &[])])).unwrap();
    drain(node);
    assert_eq!(node.tracked_status(id), Some(NodeStatus::Live));
}

/// What the peer holds, as its digest says it: everything `node` holds (its
/// own state included), but for the nodes in `behind`, of which it holds up to
/// the version given (and has collected none), or nothing at all (`None`: it
/// does not know them).
fn digest_of(node: &Chitchat, behind: &[(&NodeId, Option<u64>)]) -> Digest {
    let mut entries: Vec<DigestEntry> = node
        .tracked_states()
        .filter_map(|state| {
            let (last_gc_version, max_version) = match behind.iter().find(|(id, _)| *id == state.id()) {
                Some((_, held)) => (0, (*held)?),
                None => (state.last_gc_version(), state.max_version()),
            };
            Some(DigestEntry {
                fingerprint: state.id().fingerprint(),
                heartbeat: state.heartbeat(),
                last_gc_version,
                max_version,
            })
        })
        .collect();
    // The full ring starts at fingerprint 0: ring order is fingerprint order.
    entries.sort_by_key(|entry| entry.fingerprint);
    Digest { entries, ..empty_digest() }
}

/// Sends `node` a Syn of `digest`; returns its SynAck's bytes, checked to fit
/// and to decode.
fn syn_ack_bytes(node: &mut Chitchat, digest: Digest) -> Vec<u8> {
    node.handle_datagram(T0, addr(7001), &syn(CLUSTER, digest)).unwrap();
    let reply = node.poll_transmit().expect("a SynAck");
    assert!(node.poll_transmit().is_none());
    let max = node.config().max_datagram_size;
    assert!(reply.bytes.len() <= max, "a {}-byte SynAck exceeds {max}", reply.bytes.len());
    assert_eq!(node.metrics().transmits_dropped, 0, "an answer was too large to queue");
    reply.bytes
}

/// The delta of [`syn_ack_bytes`].
fn syn_ack(node: &mut Chitchat, digest: Digest) -> Delta {
    let Message::SynAck { delta, .. } = wire::decode(&syn_ack_bytes(node, digest)).unwrap().message else {
        panic!("a SynAck")
    };
    delta
}

/// Sends `node` a SynAck of `digest` with nothing in its delta, answering a
/// Syn `node` sent (an unsolicited one gets an Ack no larger than itself);
/// returns its Ack (`None` if it had nothing to send) and the Ack's length. The
/// Ack's delta has the whole datagram to itself.
/// The token the peer's `SynAck` carries, which the `Ack` echoes.
const SYN_ACK_TOKEN: wire::Token = wire::Token(*b"syn-ack!");

/// An `Ack` as `node` answers the peer's `SynAck`: echoing its token.
fn ack_datagram(delta: Delta) -> Vec<u8> {
    wire::encode(&wire::Packet {
        echo: Some(SYN_ACK_TOKEN),
        ..wire::Packet::new(CLUSTER, Message::Ack { delta })
    })
}

fn ack_answer(node: &mut Chitchat, digest: Digest) -> Option<(Delta, usize)> {
    while node.poll_transmit().is_some() {}
    node.gossip_with(T0, addr(7001));
    let our_syn = node.poll_transmit().expect("a Syn");
    while node.poll_transmit().is_some() {}
    let syn_ack = wire::encode(&wire::Packet {
        token: Some(SYN_ACK_TOKEN),
        echo: chitchat_core::testing::datagrams::token_of(&our_syn.bytes),
        ..wire::Packet::new(CLUSTER, Message::SynAck { digest, delta: Delta::default() })
    });
    node.handle_datagram(T0, addr(7001), &syn_ack).unwrap();
    let reply = node.poll_transmit()?;
    let max = node.config().max_datagram_size;
    assert!(reply.bytes.len() <= max, "a {}-byte Ack exceeds {max}", reply.bytes.len());
    assert_eq!(node.metrics().transmits_dropped, 0, "an answer was too large to queue");
    let Message::Ack { delta } = wire::decode(&reply.bytes).unwrap().message else { panic!("an Ack") };
    Some((delta, reply.bytes.len()))
}

/// The record `node` holds of `id` right after `version`, as a delta carries it.
fn next_record(node: &Chitchat, id: &NodeId, version: u64) -> Option<KeyValueUpdate> {
    let (key, record) = node
        .tracked_state(id)?
        .records()
        .filter(|(_, record)| record.version > version)
        .min_by_key(|(_, record)| record.version)?;
    Some(KeyValueUpdate {
        key: key.into(),
        version: record.version,
        value: ValueUpdate::Set(record.value.into()),
    })
}

fn section_id<'a>(node: &'a Chitchat, section: &NodeDelta) -> &'a NodeId {
    let fingerprint = match &section.node {
        NodeRef::Known(fingerprint) => *fingerprint,
        NodeRef::Full(id) => id.fingerprint(),
    };
    node.tracked_states().map(|state| state.id()).find(|id| id.fingerprint() == fingerprint).unwrap()
}

/// What the peer holds of one peer node: nothing, some of it, or all of it.
#[derive(Clone, Debug)]
enum Held {
    Unknown,
    UpTo(u64),
    All,
}

fn held() -> impl Strategy<Value = Held> {
    prop_oneof![Just(Held::Unknown), (0..20u64).prop_map(Held::UpTo), Just(Held::All)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever the budget (512 to 1,400 bytes), the number of nodes (up to
    /// 30), records and their sizes, and what the peer holds, the SynAck and
    /// the Ack fit `max_datagram_size`, and a section the Ack cuts in the
    /// middle could not have taken its next record (the cut uses the encoder's
    /// sizes, not an estimate).
    #[test]
    fn answers_fit_the_datagram_and_cuts_are_tight(
        max_datagram_size in 512..=1_400usize,
        // Many nodes without records too, so that sections, not only records,
        // are cut.
        peers in prop::collection::vec((prop_oneof![Just(0), 0..20u64], 0..=MAX_VALUE_LEN, held()), 1..30),
        own in prop::collection::vec(0..=MAX_VALUE_LEN, 0..10),
    ) {
        let mut node = sender(max_datagram_size);
        for (i, value_len) in own.iter().enumerate() {
            node.set(T0, &format!("own-{i}"), &"o".repeat(*value_len)).unwrap();
        }
        let ids: Vec<NodeId> = (0..peers.len() as u16).map(peer).collect();
        for (id, (count, value_len, _)) in ids.iter().zip(&peers) {
            teach(&mut node, id, filler(*count, *value_len));
        }
        // The sender's own keys are news to the peer too.
        let own_id = node.self_id().clone();
        let behind: Vec<(&NodeId, Option<u64>)> = ids
            .iter()
            .zip(&peers)
            .filter_map(|(id, (count, _, held))| match held {
                Held::Unknown => Some((id, None)),
                Held::UpTo(version) => Some((id, Some((*version).min(*count)))),
                Held::All => None,
            })
            .chain([(&own_id, Some(0))])
            .collect();
        let digest = digest_of(&node, &behind);
        syn_ack_bytes(&mut node, digest.clone());
        let Some((delta, len)) = ack_answer(&mut node, digest) else { return Ok(()) };
        let Some(last) = delta.nodes.last() else { return Ok(()) };
        let id = section_id(&node, last).clone();
        if last.max_version < node.tracked_state(&id).unwrap().max_version() {
            let next = next_record(&node, &id, last.max_version).expect("a record after the cut");
            let mut longer = delta.clone();
            let section = longer.nodes.last_mut().unwrap();
            section.max_version = next.version;
            section.key_values.push(next);
            let bytes = ack_datagram(longer);
            prop_assert!(
                bytes.len() > max_datagram_size,
                "the next record would have fit: {} bytes of {max_datagram_size} (cut at {len})",
                bytes.len()
            );
        }
    }
}

#[test]
fn a_section_cut_in_the_middle_ends_at_its_last_record_and_the_receiver_advances_that_far() {
    let mut node = sender(512);
    let mut receiver = receiver();
    let writer = peer(1);
    teach(&mut node, &writer, filler(30, 40));
    // The receiver holds the writer's first 5 records.
    receiver
        .handle_datagram(T0, addr(7000), &ack(CLUSTER, vec![full_with(writer.clone(), 1, filler(5, 40))]))
        .unwrap();
    let mut rounds = 0;
    loop {
        let held = receiver.tracked_state(&writer).unwrap().max_version();
        if held == 30 {
            break;
        }
        rounds += 1;
        let truncated = node.metrics().deltas_truncated;
        let digest = digest_of(&node, &[(&writer, Some(held))]);
        let bytes = syn_ack_bytes(&mut node, digest);
        let Message::SynAck { delta, .. } = wire::decode(&bytes).unwrap().message else { panic!("a SynAck") };
        assert_eq!(delta.nodes.len(), 1, "only the writer is news");
        let section = &delta.nodes[0];
        assert_eq!(section.node, NodeRef::Known(writer.fingerprint()));
        assert_eq!(section.from_version, held);
        let versions: Vec<u64> = section.key_values.iter().map(|record| record.version).collect();
        let last = *versions.last().expect("progress in every answer");
        assert_eq!(versions, (held + 1..=last).collect::<Vec<_>>(), "records in order, none skipped");
        assert_eq!(section.max_version, last, "the section ends at its last record");
        let cut = last < 30;
        assert_eq!(node.metrics().deltas_truncated, truncated + u64::from(cut));

        receiver.handle_datagram(T0, addr(7000), &bytes).unwrap();
        drain(&mut receiver);
        let state = receiver.tracked_state(&writer).unwrap();
        assert_eq!(state.max_version(), last, "the receiver advances exactly as far as it received");
        assert!(state.get(&format!("key-{last}")).is_some());
        assert_eq!(state.get(&format!("key-{}", last + 1)), None);
    }
    assert!(rounds >= 3, "the 25 missing records take several datagrams, took {rounds}");
    let state = receiver.tracked_state(&writer).unwrap();
    assert_eq!(state.records().count(), 30);
}

#[test]
fn unknown_nodes_come_first_then_the_largest_version_gap() {
    let unknown = [peer(1), peer(2)];
    // Four nodes the peer knows, each with 10 records, behind by 9, 3, 6 and 1.
    let behind_by = [(peer(3), 9), (peer(4), 3), (peer(5), 6), (peer(6), 1)];
    let expected_rank = |id: &NodeId| match behind_by.iter().find(|(known, _)| known == id) {
        None => 0,
        Some((_, gap)) => 10 - gap,
    };
    let setup = |max_datagram_size, value_len| {
        let mut node = sender(max_datagram_size);
        for id in unknown.iter().chain(behind_by.iter().map(|(id, _)| id)) {
            teach(&mut node, id, filler(10, value_len));
        }
        let mut behind: Vec<(&NodeId, Option<u64>)> = unknown.iter().map(|id| (id, None)).collect();
        behind.extend(behind_by.iter().map(|(id, gap)| (id, Some(10 - gap))));
        let digest = digest_of(&node, &behind);
        (node, digest)
    };
    // The ring order is not the expected one, or a delta in ring order would pass.
    let mut ring: Vec<&NodeId> = unknown.iter().chain(behind_by.iter().map(|(id, _)| id)).collect();
    ring.sort_by_key(|id| id.fingerprint());
    assert!(!ring.is_sorted_by_key(|id| expected_rank(id)), "pick other names");

    // Everything fits: every node, unknown ones first, then by gap.
    let (mut node, digest) = setup(1_400, 4);
    let delta = syn_ack(&mut node, digest);
    let order: Vec<NodeId> = delta.nodes.iter().map(|section| section_id(&node, section).clone()).collect();
    assert_eq!(order.len(), 6);
    let ranks: Vec<u64> = order.iter().map(expected_rank).collect();
    assert!(ranks.is_sorted(), "sections out of order: {order:?}");
    assert!(delta.nodes[..2].iter().all(|section| matches!(section.node, NodeRef::Full(_))));
    assert!(delta.nodes[2..].iter().all(|section| matches!(section.node, NodeRef::Known(_))));

    // Not everything fits: what is left out are the smallest gaps.
    let (mut node, digest) = setup(512, 2);
    let truncated = node.metrics().deltas_truncated;
    let delta = syn_ack(&mut node, digest);
    assert_eq!(node.metrics().deltas_truncated, truncated + 1);
    let ranks: Vec<u64> =
        delta.nodes.iter().map(|section| expected_rank(section_id(&node, section))).collect();
    assert!((3..6).contains(&ranks.len()) && ranks.is_sorted(), "ranks {ranks:?}");
    let mut all: Vec<u64> = ring.iter().map(|id| expected_rank(id)).collect();
    all.sort();
    assert_eq!(ranks, all[..ranks.len()], "the delta is the head of the order");
}

#[test]
fn a_delta_that_fits_to_the_byte_is_not_cut() {
    let writer = peer(1);
    // The peer knows the writer, but none of its records.
    let answer = |max_datagram_size| {
        let mut node = sender(max_datagram_size);
        teach(&mut node, &writer, filler(10, 50));
        let digest = digest_of(&node, &[(&writer, Some(0))]);
        let truncated = node.metrics().deltas_truncated;
        let (delta, len) = ack_answer(&mut node, digest.clone()).expect("an Ack");
        let ack_truncated = node.metrics().deltas_truncated - truncated;
        (delta, len, ack_truncated, node, digest)
    };
    let (whole, len, truncated, mut node, digest) = answer(1_400);
    assert_eq!(whole.nodes.len(), 1);
    assert_eq!(whole.nodes[0].key_values.len(), 10);
    assert_eq!(truncated, 0, "a delta with room to spare counted as cut");
    // A SynAck with room for it all is not cut either.
    let before = node.metrics().deltas_truncated;
    let delta = syn_ack(&mut node, digest);
    assert_eq!(delta, whole);
    assert_eq!(node.metrics().deltas_truncated, before);

    // A datagram exactly as large as the Ack: it fits to the byte, uncut.
    assert!(len >= Config::MIN_DATAGRAM_SIZE, "a {len}-byte Ack is too small to test with");
    let (exact, exact_len, truncated, ..) = answer(len);
    assert_eq!((exact, exact_len, truncated), (whole.clone(), len, 0));
    // One byte less: the last record stays behind.
    let (short, _, truncated, ..) = answer(len - 1);
    assert_eq!(truncated, 1);
    assert_eq!(short.nodes[0].key_values[..], whole.nodes[0].key_values[..9]);
    assert_eq!(short.nodes[0].max_version, 9);
}

#[test]
fn a_node_whose_first_record_does_not_fit_is_left_out_not_sent_empty() {
    let (first, second) = (peer(1), peer(2));
    let mut node = sender(512);
    // The peer knows both with nothing of them: `first` is 5 versions behind
    // and comes first, `second` is 1 behind with a large record.
    teach(&mut node, &first, filler(5, 80));
    teach(&mut node, &second, filler(1, MAX_VALUE_LEN));
    let digest = digest_of(&node, &[(&first, Some(0)), (&second, Some(0))]);
    let truncated = node.metrics().deltas_truncated;
    let (delta, _) = ack_answer(&mut node, digest).expect("an Ack");
    assert_eq!(node.metrics().deltas_truncated, truncated + 1);
    assert_eq!(delta.nodes.len(), 1, "only the first node: {:?}", delta.nodes);
    assert_eq!(delta.nodes[0].node, NodeRef::Known(first.fingerprint()));
    assert_eq!(delta.nodes[0].key_values.len(), 5);

    // The case is the one meant: the second node's section without records
    // would have fit, its first record would not.
    let empty = NodeDelta {
        heartbeat: node.tracked_state(&second).unwrap().heartbeat(),
        ..known(&second, 0, 0, &[])
    };
    let mut with_empty = delta.clone();
    with_empty.nodes.push(empty.clone());
    assert!(ack_datagram(with_empty).len() <= 512);
    let mut with_record = delta;
    with_record.nodes.push(NodeDelta { max_version: 1, key_values: filler(1, MAX_VALUE_LEN), ..empty });
    assert!(ack_datagram(with_record).len() > 512);
}

#[test]
fn a_peer_behind_the_garbage_collection_gets_a_reset_from_version_0() {
    let writer = peer(1);
    let mut node = sender(1_400);
    // The sender learned the writer after it collected versions up to 5.
    let collected =
        NodeDelta { last_gc_version: 5, ..full(writer.clone(), 1, &[("a", "1", 6), ("b", "2", 7)]) };
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![collected])).unwrap();
    let state = node.tracked_state(&writer).unwrap();
    assert_eq!((state.last_gc_version(), state.max_version()), (5, 7));
    // The receiver holds versions 1 to 3, all since collected by the writer.
    let mut receiver = receiver();
    let old = full(writer.clone(), 1, &[("old-1", "x", 1), ("old-2", "y", 2), ("old-3", "z", 3)]);
    receiver.handle_datagram(T0, addr(7000), &ack(CLUSTER, vec![old])).unwrap();
    drain(&mut receiver);

    let digest = digest_of(&node, &[(&writer, Some(3))]);
    let bytes = syn_ack_bytes(&mut node, digest);
    let Message::SynAck { delta, .. } = wire::decode(&bytes).unwrap().message else { panic!("a SynAck") };
    assert_eq!(delta.nodes.len(), 1);
    let section = &delta.nodes[0];
    assert!(section.reset);
    assert_eq!((section.from_version, section.last_gc_version, section.max_version), (0, 5, 7));
    let versions: Vec<u64> = section.key_values.iter().map(|record| record.version).collect();
    assert_eq!(versions, [6, 7]);

    receiver.handle_datagram(T0, addr(7000), &bytes).unwrap();
    assert_eq!(receiver.metrics().resets_applied, 1);
    let state = receiver.tracked_state(&writer).unwrap();
    assert_eq!((state.last_gc_version(), state.max_version()), (5, 7));
    let mut held: Vec<(&str, &str)> = state.key_values().collect();
    held.sort();
    assert_eq!(held, [("a", "1"), ("b", "2")], "the records the writer collected are gone");
}
