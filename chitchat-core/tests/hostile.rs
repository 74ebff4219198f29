//! The hostile-input catalogue: one test per kind of input anyone who reaches a
//! node's UDP port can send. Each asserts the typed error, the counter that
//! counts it, and that a refused datagram changed nothing (state, queued
//! outputs, timers) — or, for input that is valid but odd, the correct change.
//!
//! The last section pins bugs found while writing the catalogue and fuzzing
//! (fixed since); fuzzer inputs are kept in `fuzz/artifacts-kept/`. A bug not
//! fixed yet gets a test marked `#[ignore = "bug: ..."]`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use chitchat_core::testing::Tracked;
use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, full, known, syn};
use chitchat_core::testing::{Probe, feed, validate_peer};
use chitchat_core::wire::{Delta, Digest, DigestEntry, MAX_COUNTER, Message, NodeDelta, NodeRef, RingRange};
use chitchat_core::{
    Chitchat, Config, DatagramError, Event, Fingerprint, KeyValueError, NodeId, NodeStatus, Timestamp,
    Violation, wire,
};

const CLUSTER: &str = "hostile";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { cluster_id: CLUSTER.into(), ..Config::local_test() }
}

/// The peer every test node knows, holding key `a` at version 1.
fn peer() -> NodeId {
    NodeId::new("peer", 1, addr(7001))
}

/// A node with key `k`, knowing [`peer`], with every output drained.
fn node_with(config: Config) -> Chitchat {
    let mut node = Chitchat::new(config, NodeId::new("self", 5, addr(7000)), [("k", "v")], T0).unwrap();
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(peer(), 1, &[("a", "1", 1)])])).unwrap();
    drain(&mut node);
    node
}

fn node() -> Chitchat {
    node_with(config())
}

fn drain(node: &mut Chitchat) {
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
}

/// Feeds a datagram from the peer that must be refused; [`feed`] checks that it
/// changed nothing and moved exactly the counters of its class. Returns the
/// error.
fn refused(node: &mut Chitchat, bytes: &[u8]) -> DatagramError {
    feed(node, T0, addr(7001), bytes).expect_err("the datagram must be refused")
}

/// [`refused`] by a fresh [`node`], with the expected error.
fn assert_refused(bytes: &[u8], expected: DatagramError) {
    assert_eq!(refused(&mut node(), bytes), expected);
}

/// A datagram using every kind of field: strings, sequences, options, enums.
fn rich_datagram() -> Vec<u8> {
    let entry = DigestEntry {
        fingerprint: Fingerprint::from_u64(7),
        heartbeat: 300,
        last_gc_version: 1,
        max_version: 9,
    };
    let digest = Digest { entries: vec![entry], unknown: vec![Fingerprint::from_u64(3)], ..empty_digest() };
    let section = full(NodeId::new("ñew", 1, addr(7005)), 3, &[("é", "ü", 1), ("k2", "v2", 2)]);
    datagram(CLUSTER, Message::SynAck { digest, delta: Delta { nodes: vec![section], more: false } })
}

// ---- envelope ---------------------------------------------------------------

#[test]
fn truncated_datagrams_are_refused_at_every_length() {
    let bytes = rich_datagram();
    for len in 0..bytes.len() {
        let mut node = node();
        let error = refused(&mut node, &bytes[..len]);
        let expected =
            if len < wire::HEADER_LEN { DatagramError::TooShort } else { DatagramError::Truncated };
        assert_eq!(error, expected, "cut at {len}");
        let counts = node.metrics().rejected;
        assert_eq!(counts.envelope + counts.decode, 1);
    }
}

#[test]
fn every_length_field_pointing_past_the_end_is_refused() {
    let bytes = rich_datagram();
    let mut truncations = 0;
    // Any byte may be a length or count: make each claim more than is there.
    for position in wire::HEADER_LEN..bytes.len() {
        for claim in [0x7f, 0xff] {
            let mut hostile = bytes.clone();
            hostile[position] = claim;
            if let Err(error) = feed(&mut node(), T0, addr(7001), &hostile) {
                truncations += usize::from(error == DatagramError::Truncated);
            }
        }
    }
    assert!(truncations > 10, "only {truncations} truncations");
    // A count of 2^32 - 1 digest entries in a tiny datagram: refused at once,
    // with nothing reserved for the claim.
    let mut huge_count = syn(CLUSTER, empty_digest());
    let entries_at = huge_count.len() - 3; // entries count, unknown count, sender tag
    huge_count.truncate(entries_at);
    huge_count.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert_refused(&huge_count, DatagramError::Truncated);
}

#[test]
fn wrong_magic_is_refused() {
    let mut bytes = rich_datagram();
    bytes[0] = b'X';
    assert_refused(&bytes, DatagramError::BadMagic);
    assert_refused(b"definitely not gossip", DatagramError::BadMagic);
}

#[test]
fn an_unsupported_version_is_refused() {
    for version in [0, wire::PROTOCOL_VERSION + 1, u8::MAX] {
        let mut bytes = rich_datagram();
        bytes[wire::MAGIC.len()] = version;
        assert_refused(&bytes, DatagramError::UnsupportedVersion(version));
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = rich_datagram();
    bytes.extend_from_slice(&[0, 0, 0]);
    assert_refused(&bytes, DatagramError::TrailingBytes(3));
}

#[test]
fn invalid_utf8_is_refused_in_every_string() {
    let bytes = rich_datagram();
    // Every string of the datagram: the cluster id, the node name, keys, values.
    for needle in [&b"hostile"[..], "ñew".as_bytes(), "é".as_bytes(), b"k2", b"v2"] {
        let at = bytes.windows(needle.len()).position(|window| window == needle).unwrap();
        let mut hostile = bytes.clone();
        hostile[at] = 0xff;
        assert_refused(&hostile, DatagramError::InvalidUtf8);
    }
}

#[test]
fn a_datagram_larger_than_the_largest_is_refused() {
    // A value larger than any datagram: the sender cannot even be valid.
    let huge = "x".repeat(Config::MAX_DATAGRAM_SIZE);
    let bytes = ack(CLUSTER, vec![full(NodeId::new("big", 1, addr(7009)), 1, &[("k", &huge, 1)])]);
    assert_refused(&bytes, DatagramError::TooLarge { len: bytes.len(), max: Config::MAX_DATAGRAM_SIZE });
}

// ---- keys, values, names ----------------------------------------------------

#[test]
fn multi_byte_keys_and_values_are_stored_and_limited_in_bytes() {
    let mut node = node_with(Config { max_key_len: 8, max_value_len: 8, ..config() });
    let writer = NodeId::new("ñødé-🦀", 1, addr(7002));
    // "🦀🦀" is 8 bytes (at the limit), "ééééé" 10 bytes in 5 characters (over).
    // Validated, so that the node relays what it says.
    chitchat_core::testing::validate_peer(&mut node, T0, &writer);
    let fine = full(writer.clone(), 1, &[("🦀🦀", "ключ", 1), ("é", "ü", 2)]);
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![fine])).unwrap();
    let state = node.tracked_state(&writer).unwrap();
    assert_eq!(state.get("🦀🦀"), Some("ключ"));
    assert_eq!(state.get("é"), Some("ü"));
    let over = known(&writer, 2, 3, &[("ééééé", "v", 3)]);
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![over])).unwrap();
    assert_eq!(node.metrics().records_over_limit, 1);
    assert_eq!(node.tracked_state(&writer).unwrap().get("ééééé"), None);
    assert_eq!(node.tracked_state(&writer).unwrap().max_version(), 3, "the writer's versions still flow");
    // Own keys: limits in bytes too, with a typed error.
    assert_eq!(node.set(T0, "ééééé", "v"), Err(KeyValueError::KeyTooLong { len: 10, max: 8 }));
    node.set(T0, "🦀🦀", "ü").unwrap();
    // It all gossips: a newcomer's Syn gets every record back, intact.
    chitchat_core::testing::validate_peer(&mut node, T0, &NodeId::new("newcomer", 1, addr(7003)));
    node.handle_datagram(T0, addr(7003), &syn(CLUSTER, empty_digest())).unwrap();
    let reply = wire::decode(&node.poll_transmit().unwrap().bytes).unwrap();
    let Message::SynAck { delta, .. } = reply.message else { panic!("a SynAck") };
    let keys: Vec<&str> =
        delta.nodes.iter().flat_map(|s| s.key_values.iter().map(|r| r.key.as_str())).collect();
    for key in ["🦀🦀", "é", "k"] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    // (Not the key of `peer()`: introduced by an `Ack` from an address that
    // proved nothing, it is tracked but not relayed.)
    assert!(!keys.contains(&"a"));
}

#[test]
fn a_key_starting_with_a_multi_byte_character_works() {
    let mut node = node();
    let writer = NodeId::new("w", 1, addr(7002));
    node.handle_datagram(
        T0,
        addr(7002),
        &ack(CLUSTER, vec![full(writer.clone(), 1, &[("éa", "1", 1), ("🦀", "2", 2)])]),
    )
    .unwrap();
    let state = node.tracked_state(&writer).unwrap();
    assert_eq!(state.get("éa"), Some("1"));
    let prefixed: Vec<(&str, &str)> = state.key_values_with_prefix("é").collect();
    assert_eq!(prefixed, vec![("éa", "1")]);
    node.set(T0, "ñ-own", "x").unwrap();
    assert_eq!(node.get("ñ-own"), Some("x"));
}

/// One rule for local and remote input: a record this node could not `set`
/// (its key or value over this node's limits, which the sender's may exceed)
/// is skipped and counted, and the rest of the section applies, so that the
/// writer's later versions keep flowing. (It used to refuse the whole section,
/// so one large value blocked every later update of its node, forever.)
#[test]
fn records_over_the_limits_are_skipped_and_their_nodes_keep_flowing() {
    let mut node = node_with(Config { max_key_len: 4, max_value_len: 4, ..config() });
    let (a, b, c) =
        (NodeId::new("a", 1, addr(7002)), NodeId::new("b", 1, addr(7003)), NodeId::new("c", 1, addr(7004)));
    let long_key = full(a.clone(), 1, &[("toolong", "v", 1), ("k", "ok", 2)]);
    let long_value = full(b.clone(), 1, &[("k", "toolong", 1)]);
    let fine = full(c.clone(), 1, &[("k", "ok", 1)]);
    node.handle_datagram(T0, addr(9000), &ack(CLUSTER, vec![long_key, long_value, fine])).unwrap();
    assert_eq!(node.metrics().records_over_limit, 2);
    assert_eq!(node.metrics().sections_over_limit, 0);
    assert_eq!(node.tracked_state(&a).unwrap().get("toolong"), None);
    assert_eq!(node.tracked_state(&a).unwrap().get("k"), Some("ok"));
    assert_eq!(node.tracked_state(&b).unwrap().get("k"), None);
    assert_eq!(node.tracked_state(&c).unwrap().get("k"), Some("ok"));
    assert_eq!(node.set(T0, "k", "toolong"), Err(KeyValueError::ValueTooLong { len: 7, max: 4 }));
    // b's next version follows from where the skipped record left it.
    node.handle_datagram(T0, addr(7003), &ack(CLUSTER, vec![known(&b, 1, 2, &[("k", "fits", 2)])])).unwrap();
    assert_eq!(node.tracked_state(&b).unwrap().get("k"), Some("fits"));
    // A newer value that does not fit replaces nothing: the older one is
    // dropped rather than passed off as current.
    node.handle_datagram(T0, addr(7003), &ack(CLUSTER, vec![known(&b, 2, 3, &[("k", "toolong", 3)])]))
        .unwrap();
    assert_eq!(node.tracked_state(&b).unwrap().get("k"), None);
    assert_eq!(node.tracked_state(&b).unwrap().max_version(), 3);
    assert_eq!(node.metrics().records_over_limit, 3);
}

/// A flood of records, each within every per-node limit, cannot make a node
/// hold more of other nodes' state than `max_remote_state_bytes`: what would
/// pass it is skipped and counted, and the nodes already held keep flowing
/// (their versions, and records that do not grow the total).
#[test]
fn a_flood_of_records_stops_at_the_memory_budget() {
    let budget = 8 * 1_024;
    let mut node = node_with(Config { max_remote_state_bytes: budget, ..config() });
    let held_before = node.remote_state_bytes();
    assert_eq!(held_before, 1 + 1 + chitchat_core::RECORD_OVERHEAD, "the peer's one record");
    let value = "x".repeat(100);
    let mut sent = 0;
    for i in 0..200u16 {
        let forged = NodeId::new(format!("forged-{i}"), 1, addr(20_000 + i));
        let records: Vec<(String, &str, u64)> =
            (1..=10).map(|v| (format!("k{v}"), value.as_str(), v)).collect();
        let records: Vec<(&str, &str, u64)> = records.iter().map(|(k, v, n)| (k.as_str(), *v, *n)).collect();
        let bytes = ack(CLUSTER, vec![full(forged, 1, &records)]);
        sent += bytes.len();
        node.handle_datagram(T0, addr(20_000 + i), &bytes).unwrap();
        assert!(node.remote_state_bytes() <= budget, "{} held after {i} floods", node.remote_state_bytes());
    }
    assert!(sent > 20 * budget, "the flood carried {sent} bytes");
    let metrics = node.metrics();
    let held: u64 =
        node.tracked_states().filter(|s| s.id().name() != "self").map(|s| s.num_records() as u64).sum();
    assert_eq!(held + metrics.records_over_budget, 1 + 200 * 10, "every record held or counted");
    assert!(metrics.records_over_budget > 1_900);
    // The peer's later versions flow: a new value of its key, no larger, is
    // taken; a new key that does not fit is skipped, its version taken all the same.
    let update = known(&peer(), 1, 3, &[("a", "2", 2), ("b", "new", 3)]);
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![update])).unwrap();
    let state = node.tracked_state(&peer()).unwrap();
    assert_eq!((state.get("a"), state.max_version()), (Some("2"), 3));
    assert!(node.remote_state_bytes() <= budget);
}

/// What `set` refuses is refused from the wire: an empty key, or an identity
/// with an empty name, breaks the protocol.
#[test]
fn an_empty_key_or_node_name_from_the_wire_is_refused() {
    let empty_key = ack(CLUSTER, vec![full(NodeId::new("e", 1, addr(7005)), 1, &[("", "v", 1)])]);
    assert_eq!(refused(&mut node(), &empty_key), DatagramError::Invalid(Violation::EmptyKey));
    let nameless = ack(CLUSTER, vec![full(NodeId::new("", 1, addr(7005)), 1, &[])]);
    assert_eq!(refused(&mut node(), &nameless), DatagramError::Invalid(Violation::EmptyNodeName));
    assert_eq!(node().set(T0, "", "v"), Err(KeyValueError::EmptyKey));
    let unnamed = Chitchat::new(config(), NodeId::new("", 1, addr(7009)), Vec::<(String, String)>::new(), T0);
    assert_eq!(unnamed.err(), Some(chitchat_core::ConfigError::EmptyNodeName));
}

#[test]
fn a_key_and_value_at_their_limits_fit_one_datagram() {
    // A key at max_key_len with a value at max_value_len, held by a node whose
    // name is at max_node_name_len, reaches a newcomer: a large value never
    // blocks its node's later updates (values that fit half a datagram: larger
    // ones travel on streams, below).
    let config = Config { max_datagram_size: 1_400, max_value_len: 256, ..Config::lan() };
    let config = Config { cluster_id: CLUSTER.into(), ..config };
    let name = "n".repeat(config.max_node_name_len);
    let mut node =
        Chitchat::new(config.clone(), NodeId::new(name, u64::MAX, addr(7000)), [("x", "y")], T0).unwrap();
    node.set(T0, &"k".repeat(config.max_key_len), &"v".repeat(config.max_value_len)).unwrap();
    node.set(T0, "later", "update").unwrap();
    let (section, more) = own_section_for_a_newcomer(&mut node);
    assert_eq!(section.key_values.len(), 3, "every record, the large one included");
    assert!(!more);
}

/// The section of `node`'s own state in its 1,400-byte answer to a newcomer
/// (whose address it validated) that knows nothing, and the answer's `more`.
fn own_section_for_a_newcomer(node: &mut Chitchat) -> (NodeDelta, bool) {
    chitchat_core::testing::validate_peer(node, T0, &NodeId::new("newcomer", 1, addr(7003)));
    node.handle_datagram(T0, addr(7003), &syn(CLUSTER, empty_digest())).unwrap();
    let reply = node.poll_transmit().unwrap();
    assert!(reply.bytes.len() <= 1_400);
    let Message::SynAck { delta, .. } = wire::decode(&reply.bytes).unwrap().message else {
        panic!("a SynAck")
    };
    let own = |section: &&NodeDelta| matches!(&section.node, NodeRef::Full(id) if id == node.self_id());
    (delta.nodes.iter().find(own).expect("the node's own section").clone(), delta.more)
}

#[test]
fn a_value_too_large_for_a_datagram_is_left_to_a_stream() {
    let config = Config { cluster_id: CLUSTER.into(), ..Config::lan() };
    let mut node = Chitchat::new(config, NodeId::new("big", 1, addr(7000)), [("x", "y")], T0).unwrap();
    node.set(T0, "large", &"v".repeat(5_000)).unwrap();
    node.set(T0, "later", "update").unwrap();
    let (section, more) = own_section_for_a_newcomer(&mut node);
    // The records before the large one; the section ends where it was cut, and
    // the delta says there is more (the newcomer pulls it on a stream).
    assert_eq!(section.key_values.len(), 1);
    assert_eq!(section.max_version, 1);
    assert!(more);
}

// ---- deltas -----------------------------------------------------------------

#[test]
fn a_section_whose_max_version_is_below_its_records_is_refused() {
    let section = known(&peer(), 1, 2, &[("a", "2", 3)]);
    assert_refused(&ack(CLUSTER, vec![section]), DatagramError::Invalid(Violation::VersionOutsideSection));
}

#[test]
fn decreasing_versions_are_refused() {
    let section = known(&peer(), 1, 5, &[("b", "1", 4), ("c", "2", 3)]);
    assert_refused(&ack(CLUSTER, vec![section]), DatagramError::Invalid(Violation::VersionsNotIncreasing));
}

#[test]
fn a_delta_from_the_future_is_refused() {
    // The node holds the peer up to version 1: a section from 3 leaves a gap.
    let section = known(&peer(), 3, 5, &[("b", "1", 5)]);
    assert_refused(&ack(CLUSTER, vec![section]), DatagramError::Invalid(Violation::DeltaFromFuture));
}

#[test]
fn a_delta_naming_a_node_twice_is_refused() {
    let twice = vec![known(&peer(), 1, 2, &[("b", "1", 2)]), full(peer(), 3, &[("c", "1", 3)])];
    assert_refused(&ack(CLUSTER, twice), DatagramError::Invalid(Violation::DuplicateNodeSection));
}

#[test]
fn a_digest_naming_thousands_of_unknown_nodes_adds_none_and_the_answer_fits() {
    let mut node = node();
    let before = node.snapshot();
    let mut entries: Vec<DigestEntry> = (0..2_500u64)
        .map(|i| DigestEntry {
            fingerprint: Fingerprint::from_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            heartbeat: i % 2 * (MAX_COUNTER - 1),
            last_gc_version: 0,
            max_version: 1,
        })
        .collect();
    entries.sort_by_key(|entry| entry.fingerprint);
    let unknown = entries.iter().map(|entry| entry.fingerprint).collect();
    let bytes = syn(CLUSTER, Digest { entries, unknown, ..empty_digest() });
    assert!(bytes.len() > 40_000);
    node.handle_datagram(T0, addr(7001), &bytes).unwrap();
    assert_eq!(node.snapshot(), before, "a digest introduces nobody");
    let reply = node.poll_transmit().unwrap();
    assert!(reply.bytes.len() <= node.config().max_datagram_size);
    assert!(wire::decode(&reply.bytes).is_ok());
}

#[test]
fn a_delta_introducing_thousands_of_nodes_stays_within_max_nodes() {
    let mut node = node_with(Config { max_nodes: 100, ..config() });
    let sections: Vec<NodeDelta> =
        (0..2_000u16).map(|i| full(NodeId::new(format!("n{i}"), 1, addr(10_000 + i)), 1, &[])).collect();
    node.handle_datagram(T0, addr(9000), &ack(CLUSTER, sections)).unwrap();
    assert_eq!(node.tracked_states().count(), 100);
    assert_eq!(node.metrics().nodes_refused, 2_000 - 98);
    // First come, kept: the node itself, the peer, and the delta's first 98.
    assert!(node.tracked_state(&peer()).is_some());
    assert!(node.tracked_state(&NodeId::new("n97", 1, addr(10_097))).is_some());
    assert!(node.tracked_state(&NodeId::new("n98", 1, addr(10_098))).is_none());
}

/// A flood of forged introductions fills the table with nodes only heard of;
/// a real newcomer, introducing itself from its own address, still gets in:
/// it takes the place of the longest-known node never heard from first-hand.
/// Nodes heard from first-hand are never evicted.
#[test]
fn a_newcomer_introducing_itself_gets_into_a_table_full_of_rumors() {
    let mut node = node_with(Config { max_nodes: 10, ..config() });
    let relay = NodeId::new("relay", 1, addr(9_000));
    validate_peer(&mut node, T0, &relay);
    // Vouched for by a validated peer, never heard from first-hand.
    let rumors: Vec<NodeDelta> =
        (0..20).map(|i| full(NodeId::new(format!("rumor-{i}"), 1, addr(8_000 + i)), 1, &[])).collect();
    node.handle_datagram(T0, relay.gossip_addr(), &ack(CLUSTER, rumors)).unwrap();
    assert_eq!(node.tracked_states().count(), 10);
    // The first took the place of `peer()`, which nobody vouched for.
    assert_eq!(node.metrics().nodes_refused, 12);
    assert_eq!(node.metrics().nodes_evicted, 1);
    assert!(node.tracked_state(&peer()).is_none());
    drain(&mut node);
    // Introduced by an address that proved nothing, first-hand or not: refused.
    let second_hand = NodeId::new("second-hand", 1, addr(7_100));
    node.handle_datagram(T0, addr(9_001), &ack(CLUSTER, vec![full(second_hand.clone(), 1, &[])])).unwrap();
    assert!(node.tracked_state(&second_hand).is_none());
    let spoofed = NodeId::new("spoofed", 1, addr(7_099));
    node.handle_datagram(T0, addr(7_099), &ack(CLUSTER, vec![full(spoofed.clone(), 1, &[])])).unwrap();
    assert!(node.tracked_state(&spoofed).is_none());
    // A newcomer that answers the node's SynAck (a Syn, the short SynAck, its
    // Ack echoing the token): in, in place of the first rumor.
    let newcomer = NodeId::new("newcomer", 1, addr(7_101));
    let join = |node: &mut Chitchat, id: &NodeId| {
        node.handle_datagram(T0, id.gossip_addr(), &syn(CLUSTER, empty_digest())).unwrap();
        while node.poll_event().is_some() {}
        let syn_ack = node.poll_transmit().expect("a short SynAck");
        let introduction = chitchat_core::testing::datagrams::answering(
            CLUSTER,
            &syn_ack.bytes,
            Message::Ack { delta: Delta { nodes: vec![full(id.clone(), 1, &[])], more: false } },
        );
        node.handle_datagram(T0, id.gossip_addr(), &introduction).unwrap();
    };
    join(&mut node, &newcomer);
    assert!(node.tracked_state(&newcomer).is_some(), "the newcomer got in");
    assert_eq!(node.tracked_states().count(), 10);
    assert_eq!(node.metrics().nodes_evicted, 2);
    assert!(node.tracked_state(&relay).is_some(), "a node heard from first-hand and vouched for stays");
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(
        events.iter().any(|event| matches!(event, Event::NodeRemoved(id) if id.name().starts_with("rumor-")))
    );
    // Once every other node was heard from first-hand, nobody is evicted.
    for i in 0..20 {
        join(&mut node, &NodeId::new(format!("first-hand-{i}"), 1, addr(7_200 + i)));
    }
    assert_eq!(node.metrics().nodes_evicted, 9, "the rumors left, then no more");
    assert!(node.tracked_states().all(|state| !state.id().name().starts_with("rumor-")));
}

#[test]
fn a_full_table_keeps_the_first_comers_and_frees_room_as_dead_nodes_go() {
    let config = Config { max_nodes: 4, ..config() };
    let grace = config.dead_node_grace_period;
    let mut node = node_with(config);
    let newcomer = |i: u16| NodeId::new(format!("n{i}"), 1, addr(8_000 + i));
    let introduce = |node: &mut Chitchat, now, i| {
        node.handle_datagram(now, addr(8_000 + i), &ack(CLUSTER, vec![full(newcomer(i), 1, &[])])).unwrap()
    };
    for i in 0..5 {
        introduce(&mut node, T0, i);
    }
    assert_eq!(node.tracked_states().count(), 4);
    assert!(node.tracked_state(&newcomer(2)).is_none(), "the table was full");
    assert_eq!(node.metrics().nodes_refused, 3);
    // Nobody beats: all die, are removed after the grace period, and room comes back.
    let mut now = T0;
    while now < T0 + grace * 2 {
        now += Duration::from_millis(100);
        node.handle_timeout(now);
        drain(&mut node);
    }
    assert_eq!(node.tracked_states().count(), 1, "only the node itself is left");
    introduce(&mut node, now, 3);
    assert_eq!(node.tracked_status(&newcomer(3)), Some(NodeStatus::Live));
}

// ---- identities ---------------------------------------------------------------

#[test]
fn generations_heartbeats_and_versions_at_0_and_their_largest() {
    let mut node = node();
    let zero = NodeId::new("zero", 0, addr(7002));
    let max = NodeId::new("max", u64::MAX, addr(7003));
    let sections = vec![
        full(zero.clone(), 0, &[("a", "1", MAX_COUNTER - 1)]),
        full(max.clone(), MAX_COUNTER - 1, &[("b", "2", 1)]),
    ];
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, sections)).unwrap();
    assert_eq!(node.tracked_state(&zero).unwrap().max_version(), MAX_COUNTER - 1);
    assert_eq!(node.tracked_state(&max).unwrap().heartbeat(), MAX_COUNTER - 1);
    // Nothing can follow the largest counter: news at it changes nothing, and nothing overflows.
    let again = known(&max, 1, MAX_COUNTER - 1, &[("c", "3", MAX_COUNTER - 1)]);
    node.handle_datagram(
        T0,
        addr(7003),
        &ack(CLUSTER, vec![NodeDelta { heartbeat: MAX_COUNTER - 1, ..again }]),
    )
    .unwrap();
    let older = NodeId::new("max", u64::MAX - 1, addr(7003));
    node.handle_datagram(T0, addr(7003), &ack(CLUSTER, vec![full(older.clone(), 9, &[])])).unwrap();
    assert!(node.tracked_state(&older).is_none(), "an older incarnation is ignored");
    // A digest at the extremes is answered, and a gossip round works.
    let entry = DigestEntry {
        fingerprint: max.fingerprint(),
        heartbeat: MAX_COUNTER - 1,
        last_gc_version: MAX_COUNTER - 1,
        max_version: 0,
    };
    node.handle_datagram(T0, addr(7003), &syn(CLUSTER, Digest { entries: vec![entry], ..empty_digest() }))
        .unwrap();
    node.handle_timeout(T0 + Duration::from_millis(500));
    while let Some(transmit) = node.poll_transmit() {
        assert!(wire::decode(&transmit.bytes).is_ok());
    }
}

#[test]
fn a_node_claiming_our_identity_is_ignored() {
    let mut node = node();
    let before = node.snapshot();
    let me = node.self_id().clone();
    let impostors = vec![
        full(me.clone(), 1 << 50, &[("k", "forged", 50)]),
        full(me.with_generation(me.generation() + 1), 1, &[("k", "newer", 1)]),
        NodeDelta { reset: true, last_gc_version: 99, ..known(&me, 0, 100, &[("k", "reset", 100)]) },
        NodeDelta { left: true, ..known(&me, 1, 1, &[]) },
    ];
    for section in impostors {
        node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![section])).unwrap();
    }
    // A digest claiming a later heartbeat or version of us changes nothing either.
    let entry = DigestEntry {
        fingerprint: me.fingerprint(),
        heartbeat: 1 << 50,
        last_gc_version: 0,
        max_version: 99,
    };
    node.handle_datagram(T0, addr(7001), &syn(CLUSTER, Digest { entries: vec![entry], ..empty_digest() }))
        .unwrap();
    drain(&mut node);
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.get("k"), Some("v"));
    assert_eq!(node.metrics().sections_ignored, 4);
}

#[test]
fn unusual_addresses_are_tracked_and_gossiped_to() {
    let mut node = node();
    let unusual = [
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 7002),
        SocketAddr::new("2001:db8::1".parse().unwrap(), u16::MAX),
        SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), 0),
        SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 7003),
    ];
    for (i, gossip_addr) in unusual.into_iter().enumerate() {
        let id = NodeId::new(format!("odd-{i}"), 1, gossip_addr);
        // Introduced, and heard from at that address (the source is just as odd).
        node.handle_datagram(T0, gossip_addr, &ack(CLUSTER, vec![full(id.clone(), 1, &[("k", "v", 1)])]))
            .unwrap();
        assert_eq!(node.tracked_status(&id), Some(NodeStatus::Live));
    }
    for round in 1..=5 {
        node.handle_timeout(T0 + Duration::from_millis(100 * round));
    }
    while let Some(transmit) = node.poll_transmit() {
        assert!(wire::decode(&transmit.bytes).is_ok());
    }
}

#[test]
fn a_bad_cluster_from_a_stranger_is_counted_and_changes_nothing() {
    let mut node = node();
    let before = Probe::of(&node, T0);
    let bytes = datagram(CLUSTER, Message::BadCluster);
    node.handle_datagram(T0, addr(9_999), &bytes).unwrap();
    before.assert_ignored(&Probe::of(&node, T0), bytes.len(), |counts| counts.bad_cluster_received += 1);
    // From another cluster it is refused as such.
    assert_refused(&datagram("other", Message::BadCluster), DatagramError::WrongCluster);
}

#[test]
fn a_datagram_after_leaving_is_refused() {
    let mut node = node();
    node.leave(T0);
    drain(&mut node);
    assert_eq!(refused(&mut node, &rich_datagram()), DatagramError::NotRunning);
    assert_eq!(node.metrics().rejected.not_running, 1);
}

// ---- floods ----------------------------------------------------------------------
//
// A flood of one million valid-looking datagrams with fresh node ids is in
// `tests/flood.rs`, alone in its test binary so that its memory measurement sees
// no other test's allocations.

// ---- bugs found by the fuzzers ----------------------------------------------------

/// Found by `hostile_messages` (input in fuzz/artifacts-kept/hostile_messages/):
/// a repeated fingerprint was answered with one section per repetition, a
/// datagram every receiver refused.
#[test]
fn a_repeated_unknown_fingerprint_is_answered_once() {
    let mut node = node();
    let me = node.self_id().fingerprint();
    // A range that covers every fingerprint but ours, with the peer up to date,
    // and asks for us three times: the answer's delta is our section, once.
    let range = RingRange { start: Fingerprint::from_u64(me.as_u64().wrapping_add(1)), end: me };
    let peer =
        DigestEntry { fingerprint: peer().fingerprint(), heartbeat: 1, last_gc_version: 0, max_version: 1 };
    let digest =
        Digest { range, entries: vec![peer], unknown: vec![me, me, me], sender: None, ..Digest::default() };
    node.handle_datagram(T0, addr(7001), &syn(CLUSTER, digest)).unwrap();
    let reply = node.poll_transmit().unwrap();
    let packet = wire::decode(&reply.bytes).expect("the node's answer must be valid");
    let Message::SynAck { delta, .. } = packet.message else { panic!("a SynAck") };
    assert_eq!(delta.nodes.len(), 1);
}

/// A reset kept the records above its watermark but counted none of them
/// against `max_keys_per_node`.
#[test]
fn a_reset_cannot_exceed_max_keys_per_node() {
    let mut node = node_with(Config { max_keys_per_node: 4, ..config() });
    let writer = NodeId::new("w", 1, addr(7002));
    let held = full(writer.clone(), 1, &[("a", "1", 10), ("b", "2", 11), ("c", "3", 12), ("d", "4", 13)]);
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![held])).unwrap();
    // A reset above a watermark of 5 keeps the records above it (10..13) and
    // brings four new keys below them.
    let reset = NodeDelta {
        reset: true,
        last_gc_version: 5,
        ..known(&writer, 0, 13, &[("e", "5", 6), ("f", "6", 7), ("g", "7", 8), ("h", "8", 9)])
    };
    let _ = node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![reset]));
    let held = node.tracked_state(&writer).map_or(0, |state| state.num_records());
    assert!(held <= 4, "{held} records held, max_keys_per_node is 4");
}

/// Found by `hostile_messages` (fuzz/artifacts-kept/hostile_messages/
/// sent-record-outside-its-section): a reset cut short (its `max_version` below
/// its `last_gc_version`) lowers the node's max version but keeps the records
/// above the watermark, so the node later sends a section whose records lie
/// above its `max_version`, which every receiver refuses.
#[test]
fn a_reset_cut_short_never_makes_the_node_send_an_invalid_section() {
    let mut node = node();
    let writer = NodeId::new("w", 1, addr(7002));
    node.handle_datagram(
        T0,
        addr(7002),
        &ack(CLUSTER, vec![full(writer.clone(), 1, &[("a", "1", 1), ("b", "2", 2)])]),
    )
    .unwrap();
    let cut_short = NodeDelta { reset: true, last_gc_version: 1, ..known(&writer, 0, 0, &[]) };
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![cut_short])).unwrap();
    drain(&mut node);
    node.handle_datagram(T0, addr(7003), &syn(CLUSTER, empty_digest())).unwrap();
    let reply = node.poll_transmit().unwrap();
    wire::decode(&reply.bytes).expect("the node's answer must be valid");
}

/// An identity claiming this node's own address (forged, or a node that ran
/// here before) is not tracked: this node's gossip comes from that address, so
/// tracking it would make every peer take it for first-hand proof that the
/// impostor lives (found by the `protocol_ops` fuzzer).
#[test]
fn an_identity_claiming_our_address_is_not_tracked() {
    let mut node = node();
    let before = node.snapshot();
    let me = node.self_id().clone();
    let impostor = NodeId::new("impostor", 7, me.gossip_addr());
    node.handle_datagram(
        T0,
        addr(7001),
        &ack(CLUSTER, vec![full(impostor.clone(), 7, &[("k", "forged", 1)])]),
    )
    .unwrap();
    drain(&mut node);
    assert_eq!(node.tracked_state(&impostor).map(|state| state.heartbeat()), None);
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.metrics().sections_ignored, 1);
}
