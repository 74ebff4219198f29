//! One node driven by hand with crafted datagrams: the rules of the handshake,
//! hostile peers, limits, and digests that must fit.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use chitchat_core::testing::Tracked;
use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, full, known, syn};
use chitchat_core::testing::feed;
use chitchat_core::wire::{MAX_COUNTER, Message, NodeDelta, NodeRef};
use chitchat_core::{
    Chitchat, Config, ConfigError, DatagramError, Event, KeyValueError, NodeId, NodeStatus, Timestamp,
    Violation, wire,
};

const CLUSTER: &str = "test-cluster";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { cluster_id: CLUSTER.into(), ..Config::local_test() }
}

fn node_with(config: Config) -> Chitchat {
    let mut node = Chitchat::new(config, NodeId::new("self", 5, addr(7000)), [("k", "v")], T0).unwrap();
    while node.poll_event().is_some() {}
    node
}

fn node() -> Chitchat {
    node_with(config())
}

/// Introduces a node and validates its address (so that the node relays it
/// and takes what it says), then reports its heartbeat growing, so that it is
/// live.
fn introduce_live(node: &mut Chitchat, id: &NodeId) {
    chitchat_core::testing::validate_peer(node, T0, id);
    node.handle_datagram(T0, id.gossip_addr(), &ack(CLUSTER, vec![known(id, 0, 0, &[])])).unwrap();
    assert_eq!(node.tracked_status(id), Some(NodeStatus::Live));
}

fn peer(name: &str, generation: u64, port: u16) -> NodeId {
    NodeId::new(name, generation, addr(port))
}

fn syn_digest(bytes: &[u8]) -> chitchat_core::wire::Digest {
    let Message::Syn { digest } = decode(bytes) else { panic!("not a Syn") };
    digest
}

fn decode(bytes: &[u8]) -> Message {
    wire::decode(bytes).unwrap().message
}

#[test]
fn a_syn_from_another_cluster_is_answered_bad_cluster_and_changes_nothing() {
    let mut node = node();
    let before = node.snapshot();
    node.handle_datagram(T0, addr(9000), &syn("other", empty_digest())).unwrap();
    let reply = node.poll_transmit().unwrap();
    assert_eq!(reply.to, addr(9000));
    assert_eq!(decode(&reply.bytes), Message::BadCluster);
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.metrics().bad_cluster_sent, 1);
}

#[test]
fn a_delta_from_another_cluster_is_refused() {
    let mut node = node();
    let foreign = ack("other", vec![full(peer("x", 1, 1), 1, &[])]);
    // `feed` checks that the refusal changed nothing and counted it as such.
    assert_eq!(feed(&mut node, T0, addr(9000), &foreign), Err(DatagramError::WrongCluster));
    assert_eq!(node.metrics().rejected.wrong_cluster, 1);
}

/// A node of another cluster answers a Syn with `BadCluster`, which carries
/// its own cluster id: taken (counted, logged) as the answer to that Syn; one
/// that answers nothing of ours is refused.
#[test]
fn a_bad_cluster_answering_our_syn_is_counted() {
    let mut node = node();
    node.gossip_with(T0, addr(9001));
    let our_syn = node.poll_transmit().expect("a Syn");
    while node.poll_transmit().is_some() {}
    // One that does not echo the Syn's token answers nothing.
    let blind = datagram("other", Message::BadCluster);
    assert_eq!(feed(&mut node, T0, addr(9001), &blind), Err(DatagramError::WrongCluster), "no echo");
    let bytes = chitchat_core::testing::datagrams::answering("other", &our_syn.bytes, Message::BadCluster);
    node.handle_datagram(T0, addr(9001), &bytes).unwrap();
    assert_eq!(node.metrics().bad_cluster_received, 1);
    assert_eq!(feed(&mut node, T0, addr(9001), &bytes), Err(DatagramError::WrongCluster), "once per Syn");
    assert_eq!(feed(&mut node, T0, addr(9002), &bytes), Err(DatagramError::WrongCluster), "never asked");
}

#[test]
fn a_syn_gets_a_syn_ack_with_what_the_peer_lacks() {
    let mut node = node();
    node.set(T0, "color", "blue").unwrap();
    node.handle_datagram(T0, addr(9000), &syn(CLUSTER, empty_digest())).unwrap();
    let Message::SynAck { digest, delta } = decode(&node.poll_transmit().unwrap().bytes) else { panic!() };
    assert!(digest.range.is_full());
    assert_eq!(digest.entries.len(), 1);
    assert_eq!(delta.nodes.len(), 1);
    let section = &delta.nodes[0];
    assert_eq!(section.node, NodeRef::Full(node.self_id().clone()));
    let keys: Vec<&str> = section.key_values.iter().map(|record| record.key.as_str()).collect();
    assert_eq!(keys, vec!["k", "color"]);
}

/// A `SynAck` carries a token (for the `Ack` to echo, proving the peer's
/// address) only to an address not proven yet; a proven peer then sends no
/// empty `Ack`: a settled handshake is two datagrams.
#[test]
fn only_an_unproven_address_is_asked_to_prove_itself() {
    let mut node = node();
    let stranger = addr(9000);
    node.handle_datagram(T0, stranger, &syn(CLUSTER, empty_digest())).unwrap();
    let answer = wire::decode(&node.poll_transmit().unwrap().bytes).unwrap();
    assert!(matches!(answer.message, Message::SynAck { .. }));
    assert!(answer.token.is_some(), "a stranger's Ack must prove its address");

    let friend = peer("friend", 1, 9001);
    introduce_live(&mut node, &friend);
    while node.poll_transmit().is_some() {}
    node.handle_datagram(T0, friend.gossip_addr(), &syn(CLUSTER, empty_digest())).unwrap();
    let answer = wire::decode(&node.poll_transmit().unwrap().bytes).unwrap();
    assert!(matches!(answer.message, Message::SynAck { .. }));
    assert_eq!(answer.token, None, "a proven address has nothing to prove");

    // The other side: a solicited SynAck with no token and nothing to send
    // gets no Ack; with a token, an empty Ack echoes it.
    for (token, acked) in [(None, false), (Some(wire::Token([7; 8])), true)] {
        node.gossip_with(T0, friend.gossip_addr());
        let syn = node.poll_transmit().unwrap();
        while node.poll_transmit().is_some() {}
        let mut syn_ack = wire::decode(&chitchat_core::testing::datagrams::answering(
            CLUSTER,
            &syn.bytes,
            // The peer holds what the node holds: its digest is the node's own.
            Message::SynAck { digest: syn_digest(&syn.bytes), delta: Default::default() },
        ))
        .unwrap();
        syn_ack.token = token;
        node.handle_datagram(T0, friend.gossip_addr(), &wire::encode(&syn_ack)).unwrap();
        let ack = node.poll_transmit().map(|transmit| wire::decode(&transmit.bytes).unwrap());
        assert_eq!(ack.is_some(), acked, "token {token:?}");
        if let Some(ack) = ack {
            assert!(matches!(&ack.message, Message::Ack { delta } if delta.nodes.is_empty()));
            assert_eq!(ack.echo, token);
        }
    }
}

/// A reset takes the records its sender holds below its watermark, but not
/// those that were expiring or deleted there: the owner collected them (it
/// collects its records in version order), and a sender that learned of one
/// later, and still holds it, must not hand back a key the receiver expired.
#[test]
fn a_reset_does_not_hand_back_expiring_records_below_the_watermark() {
    use chitchat_core::wire::{KeyValueUpdate, ValueUpdate};
    let mut node = node();
    let owner = peer("owner", 1, 9100);
    introduce_live(&mut node, &owner);
    let record = |key: &str, version, value| KeyValueUpdate { key: key.into(), version, value };
    let mut section = chitchat_core::testing::datagrams::full_with(
        owner.clone(),
        3,
        vec![
            record("expiring", 1, ValueUpdate::SetWithTtl("x".into())),
            record("deleted", 2, ValueUpdate::Deleted),
            record("kept", 3, ValueUpdate::Set("k".into())),
            record("fresh", 6, ValueUpdate::SetWithTtl("f".into())),
        ],
    );
    section.node = NodeRef::Known(owner.fingerprint());
    section.last_gc_version = 5;
    node.handle_datagram(T0, owner.gossip_addr(), &ack(CLUSTER, vec![section])).unwrap();
    let state = node.node_state(&owner).unwrap();
    assert_eq!((state.max_version(), state.last_gc_version()), (6, 5));
    assert_eq!(state.get("kept"), Some("k"));
    assert_eq!(state.get("fresh"), Some("f"));
    assert_eq!(state.get_versioned("expiring"), None);
    assert_eq!(state.get_versioned("deleted"), None);
}

#[test]
fn a_delta_from_the_future_is_refused() {
    let mut node = node();
    let other = peer("other", 1, 7001);
    node.handle_datagram(
        T0,
        other.gossip_addr(),
        &ack(CLUSTER, vec![full(other.clone(), 1, &[("a", "1", 1)])]),
    )
    .unwrap();
    while node.poll_event().is_some() {}
    let gap = known(&other, 3, 5, &[("b", "2", 5)]);
    let result = feed(&mut node, T0, other.gossip_addr(), &ack(CLUSTER, vec![gap]));
    assert_eq!(result, Err(DatagramError::Invalid(Violation::DeltaFromFuture)));
    assert_eq!(node.metrics().rejected.invalid, 1);
}

#[test]
fn nobody_may_speak_for_this_node() {
    let mut node = node();
    let before = node.snapshot();
    let impostors = vec![
        full(node.self_id().clone(), 99, &[("k", "forged", 50)]),
        full(peer("self", 6, 7000), 1, &[("k", "newer-me", 1)]),
        full(peer("self", 4, 7000), 1, &[("k", "older-me", 1)]),
    ];
    for section in impostors {
        node.handle_datagram(T0, addr(9000), &ack(CLUSTER, vec![section])).unwrap();
    }
    assert_eq!(node.snapshot(), before);
    assert_eq!(node.get("k"), Some("v"));
    assert_eq!(node.metrics().sections_ignored, 3);
}

#[test]
fn a_newer_generation_supersedes_and_an_older_one_is_ignored() {
    let mut node = node();
    let old = peer("p", 7, 7001);
    let new = peer("p", 8, 7001);
    // The old incarnation answered this node: its address is validated, and
    // what comes from there is vouched for.
    chitchat_core::testing::validate_peer(&mut node, T0, &old);
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(old.clone(), 1, &[("a", "old", 1)])]))
        .unwrap();
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(new.clone(), 1, &[("a", "new", 1)])]))
        .unwrap();
    assert!(node.tracked_state(&old).is_none());
    assert_eq!(node.tracked_state(&new).unwrap().get("a"), Some("new"));
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(events.contains(&Event::NodeRemoved(old.clone())));
    assert!(events.contains(&Event::NodeRestarted { previous: old.clone(), current: new.clone() }));
    // Stale gossip of the old incarnation changes nothing.
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(old.clone(), 9, &[("a", "stale", 9)])]))
        .unwrap();
    assert!(node.tracked_state(&old).is_none());
    assert_eq!(node.tracked_state(&new).unwrap().get("a"), Some("new"));
}

#[test]
fn generations_and_heartbeats_at_the_extremes_work() {
    let mut node = node();
    let zero = peer("zero", 0, 7001);
    let max = peer("max", u64::MAX, 7002);
    node.handle_datagram(
        T0,
        addr(7001),
        &ack(CLUSTER, vec![full(zero.clone(), 0, &[("a", "1", MAX_COUNTER - 1)])]),
    )
    .unwrap();
    node.handle_datagram(
        T0,
        addr(7002),
        &ack(CLUSTER, vec![full(max.clone(), MAX_COUNTER - 1, &[("b", "2", 1)])]),
    )
    .unwrap();
    assert_eq!(node.tracked_state(&zero).unwrap().max_version(), MAX_COUNTER - 1);
    assert_eq!(node.tracked_state(&max).unwrap().heartbeat(), MAX_COUNTER - 1);
    node.handle_timeout(T0 + Duration::from_millis(200));
    while let Some(transmit) = node.poll_transmit() {
        assert!(wire::decode(&transmit.bytes).is_ok());
    }
}

#[test]
fn tracked_nodes_stay_within_max_nodes() {
    let mut node = node_with(Config { max_nodes: 3, ..config() });
    let sections = (0..10).map(|i| full(peer(&format!("p{i}"), 1, 7100 + i), 1, &[])).collect();
    node.handle_datagram(T0, addr(9000), &ack(CLUSTER, sections)).unwrap();
    assert_eq!(node.tracked_states().count(), 3);
    assert_eq!(node.metrics().nodes_refused, 8);
}

#[test]
fn records_over_a_local_limit_are_skipped_and_the_rest_applies() {
    let mut node = node_with(Config { max_value_len: 4, max_keys_per_node: 2, ..config() });
    let long_value = full(peer("a", 1, 7001), 1, &[("k", "too long", 1)]);
    let too_many = full(peer("b", 1, 7002), 1, &[("x", "1", 1), ("y", "2", 2), ("z", "3", 3)]);
    let fine = full(peer("c", 1, 7003), 1, &[("k", "ok", 1)]);
    node.handle_datagram(T0, addr(9000), &ack(CLUSTER, vec![long_value, too_many, fine])).unwrap();
    assert_eq!(node.metrics().records_over_limit, 2);
    assert_eq!(node.tracked_state(&peer("c", 1, 7003)).unwrap().get("k"), Some("ok"));
    assert_eq!(node.tracked_state(&peer("a", 1, 7001)).unwrap().num_records(), 0);
    let b = node.tracked_state(&peer("b", 1, 7002)).unwrap();
    assert_eq!((b.get("x"), b.get("y"), b.get("z")), (Some("1"), Some("2"), None));
    assert_eq!(b.max_version(), 3);
}

#[test]
fn own_keys_are_checked_with_clear_errors() {
    let mut node = node_with(Config { max_key_len: 4, max_value_len: 8, max_keys_per_node: 2, ..config() });
    assert_eq!(node.set(T0, "", "v"), Err(KeyValueError::EmptyKey));
    assert_eq!(node.set(T0, "\0dead:0000000000000001", "1"), Err(KeyValueError::ReservedKey));
    assert_eq!(node.set(T0, "toolong", "v"), Err(KeyValueError::KeyTooLong { len: 7, max: 4 }));
    assert_eq!(node.set(T0, "k", "123456789"), Err(KeyValueError::ValueTooLong { len: 9, max: 8 }));
    node.set(T0, "é", "ü").unwrap();
    assert_eq!(node.set(T0, "x", "1"), Err(KeyValueError::TooManyKeys { max: 2 }));
    node.set(T0, "k", "changed").unwrap();
    node.leave(T0);
    while node.poll_transmit().is_some() {}
    assert_eq!(node.set(T0, "k", "after"), Err(KeyValueError::NotRunning));
    assert_eq!(node.handle_datagram(T0, addr(1), &ack(CLUSTER, vec![])), Err(DatagramError::NotRunning));
    assert_eq!(node.poll_timeout(), None);
}

#[test]
fn bad_identities_and_configs_are_refused_at_construction() {
    let long_name = NodeId::new("n".repeat(200), 1, addr(1));
    let error = Chitchat::new(config(), long_name, Vec::<(String, String)>::new(), T0).err().unwrap();
    assert!(matches!(error, ConfigError::NodeNameTooLong { len: 200, .. }));
    let error = Chitchat::new(config(), peer("a", 1, 1), [("", "v")], T0).err().unwrap();
    assert_eq!(error, ConfigError::InitialKeyValue(KeyValueError::EmptyKey));
    let zero = Config { gossip_interval: Duration::ZERO, ..config() };
    assert!(Chitchat::new(zero, peer("a", 1, 1), Vec::<(String, String)>::new(), T0).is_err());
}

#[test]
fn a_farewell_marks_the_sender_left_at_once() {
    let mut node = node();
    let other = peer("other", 1, 7001);
    chitchat_core::testing::validate_peer(&mut node, T0, &other);
    let mut farewell = full(other.clone(), 2, &[]);
    farewell.left = true;
    // Forged, from an address that proved nothing: only the heartbeat counts.
    node.handle_datagram(T0, addr(7999), &ack(CLUSTER, vec![farewell.clone()])).unwrap();
    assert_eq!(node.tracked_status(&other), Some(NodeStatus::Live));
    assert_eq!(node.metrics().sections_unproven, 1);
    assert_eq!(node.tracked_state(&other).unwrap().heartbeat(), 2);
    // From the node itself, whose address is validated: left at once.
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![farewell.clone()])).unwrap();
    assert_eq!(node.tracked_status(&other), Some(NodeStatus::Left));
    assert!(std::iter::from_fn(|| node.poll_event()).any(|event| event == Event::NodeLeft(other.clone())));
    // A farewell from a node never met adds nothing.
    let mut stranger = full(peer("stranger", 1, 7002), 1, &[]);
    stranger.left = true;
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![stranger])).unwrap();
    assert!(node.tracked_state(&peer("stranger", 1, 7002)).is_none());
}

/// A farewell from the node's own address, which never proved itself to this
/// node (the node is known from a validated peer): taken here at once, but
/// not passed on, and revoked when the node's heartbeat grows again (a
/// spoofer's farewell does not stop the node from beating).
#[test]
fn an_unproven_farewell_is_taken_provisionally_and_revoked_by_a_heartbeat() {
    let mut node = node();
    let relay = peer("relay", 1, 7001);
    chitchat_core::testing::validate_peer(&mut node, T0, &relay);
    let other = peer("other", 1, 7002);
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(other.clone(), 5, &[("a", "1", 1)])]))
        .unwrap();
    let mut farewell = known(&other, 1, 1, &[]);
    farewell.left = true;
    farewell.heartbeat = 5;
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![farewell])).unwrap();
    assert_eq!(node.tracked_status(&other), Some(NodeStatus::Left));
    assert!(!node.tracked_state(&other).unwrap().has_left(), "not passed on as left");
    while node.poll_event().is_some() {}
    let beat = NodeDelta { heartbeat: 6, ..known(&other, 1, 1, &[]) };
    node.handle_datagram(T0 + Duration::from_millis(100), addr(7001), &ack(CLUSTER, vec![beat])).unwrap();
    assert_eq!(node.tracked_status(&other), Some(NodeStatus::Live));
    assert!(std::iter::from_fn(|| node.poll_event()).any(|event| event == Event::NodeLive(other.clone())));
}

/// What unproven datagrams said of a node no proven sender vouched for yet is
/// held, out of the application's sight (no view, no event), and dropped at
/// the first whole section from a proven one: the application then hears
/// that the node joined, is live, and holds what the proven sender said.
#[test]
fn the_first_proven_news_of_a_node_replaces_what_unproven_ones_said() {
    let mut node = node();
    let relay = peer("relay", 1, 7001);
    chitchat_core::testing::validate_peer(&mut node, T0, &relay);
    let other = peer("other", 1, 7002);
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![full(other.clone(), 1, &[("evil", "x", 1)])]))
        .unwrap();
    assert_eq!(node.tracked_state(&other).unwrap().get("evil"), Some("x"), "held here, not relayed");
    let unproven: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(!format!("{unproven:?}").contains("other"), "unseen: {unproven:?}");
    assert!(node.node_state(&other).is_none() && !node.live_nodes().any(|id| *id == other));
    node.handle_datagram(T0, addr(7001), &ack(CLUSTER, vec![full(other.clone(), 1, &[("good", "y", 1)])]))
        .unwrap();
    let state = node.node_state(&other).expect("vouched for: seen");
    assert_eq!((state.get("evil"), state.get("good"), state.max_version()), (None, Some("y"), 1));
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    let set = Event::KeySet { node: other.clone(), key: "good".into(), value: "y".into(), version: 1 };
    assert_eq!(
        events[..3],
        [Event::NodeJoined(other.clone()), Event::NodeLive(other.clone()), set],
        "{events:?}"
    );
    assert!(!events.iter().any(|event| matches!(event, Event::NodeReset(_) | Event::KeyDeleted { .. })));
    assert!(node.live_nodes().any(|id| *id == other));
}

/// A node heard of only from its own address, before that address proved
/// anything, is vouched for once the address answers a `Syn` of this node
/// (echoing its token); what it said before that is dropped, as from any
/// unproven sender: the application hears that it joined and is live, and
/// none of the earlier records.
#[test]
fn a_validated_address_vouches_for_its_node_and_drops_what_came_unproven() {
    let mut node = node();
    let other = peer("other", 1, 7002);
    node.handle_datagram(T0, addr(7002), &ack(CLUSTER, vec![full(other.clone(), 3, &[("evil", "x", 1)])]))
        .unwrap();
    assert!(node.node_state(&other).is_none(), "unseen before it is vouched for");
    while node.poll_event().is_some() {}
    node.gossip_with(T0, addr(7002));
    let syn = std::iter::from_fn(|| node.poll_transmit()).find(|transmit| transmit.to == addr(7002)).unwrap();
    let answer = chitchat_core::testing::datagrams::answering(
        CLUSTER,
        &syn.bytes,
        Message::SynAck { digest: empty_digest(), delta: Default::default() },
    );
    node.handle_datagram(T0, addr(7002), &answer).unwrap();
    let state = node.node_state(&other).expect("vouched for: seen");
    assert_eq!((state.get("evil"), state.max_version(), state.heartbeat()), (None, 0, 3));
    assert_eq!(node.remote_state_bytes(), 0);
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    let ready = Event::ReadyChanged { node: other.clone(), ready: true };
    assert_eq!(events, [Event::NodeJoined(other.clone()), Event::NodeLive(other.clone()), ready]);
}

#[test]
fn leaving_sends_farewells_then_emits_left() {
    let mut node = node();
    for i in 0..3 {
        introduce_live(&mut node, &peer(&format!("p{i}"), 1, 7001 + i));
    }
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
    node.leave(T0);
    let self_id = node.self_id().clone();
    let mut farewells = BTreeSet::new();
    while let Some(transmit) = node.poll_transmit() {
        assert!(!node.has_left() || farewells.len() == 2, "left only after the last farewell");
        let Message::Ack { delta } = decode(&transmit.bytes) else { panic!() };
        assert!(delta.nodes[0].left);
        farewells.insert(transmit.to);
    }
    assert_eq!(farewells.len(), 3);
    assert!(node.has_left());
    assert!(std::iter::from_fn(|| node.poll_event()).any(|event| event == Event::NodeLeft(self_id.clone())));
}

/// A node that knows `count` other nodes, each with `keys` keys, introduced
/// by a validated peer (`relay`, at port 9100) so that it relays them.
fn node_knowing(count: u16, keys: usize, config: Config) -> Chitchat {
    let mut node = node_with(config);
    chitchat_core::testing::validate_peer(&mut node, T0, &peer("relay", 1, 9100));
    for i in 0..count {
        let records: Vec<(String, String, u64)> =
            (0..keys).map(|k| (format!("key-{k}"), format!("value-{i}-{k}"), k as u64 + 1)).collect();
        let records: Vec<(&str, &str, u64)> =
            records.iter().map(|(k, v, n)| (k.as_str(), v.as_str(), *n)).collect();
        let id = peer(&format!("node-{i:04}"), 1, 10_000 + i);
        node.handle_datagram(T0, addr(9100), &ack(CLUSTER, vec![full(id.clone(), 100, &records)])).unwrap();
        let beat = NodeDelta { heartbeat: 101, ..known(&id, keys as u64, keys as u64, &[]) };
        node.handle_datagram(T0, addr(9100), &ack(CLUSTER, vec![beat])).unwrap();
    }
    while node.poll_event().is_some() {}
    node
}

#[test]
fn syns_hash_the_ring_in_a_few_hundred_bytes_and_rotate_over_every_node() {
    let config = Config { max_datagram_size: 1_400, ..Config::lan() };
    let config = Config { cluster_id: CLUSTER.into(), gossip_interval: Duration::from_millis(100), ..config };
    let mut node = node_knowing(1_000, 0, config);
    let fingerprints: Vec<_> = node.tracked_states().map(|state| state.id().fingerprint()).collect();
    let mut covered = BTreeSet::new();
    let mut now = T0;
    let mut rounds = 0;
    while covered.len() < fingerprints.len() {
        rounds += 1;
        assert!(rounds <= 40, "covered {} nodes in 40 rounds", covered.len());
        node.handle_timeout(now);
        now += Duration::from_millis(100);
        while let Some(transmit) = node.poll_transmit() {
            let Message::Syn { digest } = decode(&transmit.bytes) else { continue };
            // No listing: hashed ranges, and the nodes just learned as rumors.
            assert!(transmit.bytes.len() <= 1_400);
            assert!(digest.entries.is_empty() && !digest.range.is_full());
            assert!(!digest.rumors.is_empty());
            for (range, _) in digest.hashes.ranges() {
                covered
                    .extend(fingerprints.iter().copied().filter(|fingerprint| range.contains(*fingerprint)));
            }
        }
    }
    // 1,001 nodes in ranges of 24, 16 ranges a Syn, three Syns a round.
    assert!(rounds <= 1, "{rounds} rounds to cover the ring");
    // Once the rumors are spread: 16 hashes, the sender's entry and the
    // envelope.
    for _ in 0..10 {
        node.handle_timeout(now);
        now += Duration::from_millis(100);
        while node.poll_transmit().is_some() {}
    }
    node.handle_timeout(now);
    while let Some(transmit) = node.poll_transmit() {
        let Message::Syn { digest } = decode(&transmit.bytes) else { continue };
        assert!(digest.rumors.is_empty());
        assert!(transmit.bytes.len() <= 340, "a Syn of {} bytes", transmit.bytes.len());
    }
}

#[test]
fn a_syn_ack_fits_and_shares_the_datagram_between_digest_and_delta() {
    let config = Config { cluster_id: CLUSTER.into(), ..Config::lan() };
    let mut node = node_knowing(1_000, 3, config);
    chitchat_core::testing::validate_peer(&mut node, T0, &NodeId::new("newcomer", 1, addr(9000)));
    // A newcomer knows nothing: the delta wants everything, the digest too.
    node.handle_datagram(T0, addr(9000), &syn(CLUSTER, empty_digest())).unwrap();
    let reply = node.poll_transmit().unwrap();
    assert!(reply.bytes.len() <= 1_400, "{}", reply.bytes.len());
    assert!(reply.bytes.len() > 1_300, "the datagram is used: {}", reply.bytes.len());
    let Message::SynAck { digest, delta } = decode(&reply.bytes) else { panic!() };
    assert!(!digest.entries.is_empty());
    assert!(!delta.nodes.is_empty());
    assert!(delta.nodes.iter().all(|section| matches!(section.node, NodeRef::Full(_))));
}

/// A node whose event loop runs its gossip rounds late (by 90 % of an interval
/// each time, short of a pause) counts a silent peer's silence in its own
/// rounds: the peer is not dead after 8 intervals of wall time, only after
/// about 8 of the node's rounds, and then it is.
#[test]
fn a_node_running_late_counts_silence_in_its_own_rounds() {
    let mut node = node();
    let silent = peer("silent", 1, 7001);
    introduce_live(&mut node, &silent);
    let interval = config().gossip_interval;
    let mut rounds = 0;
    let (dead_after, now) = loop {
        let due = node.poll_timeout().expect("a running node has a deadline");
        let now = due + interval.mul_f64(0.9);
        node.handle_timeout(now);
        rounds += 1;
        if node.tracked_status(&silent) == Some(NodeStatus::Dead) {
            break (rounds, now);
        }
        assert!(rounds < 40, "never declared dead");
    };
    // A threshold of 8 is about nine silent rounds without loss.
    assert!((7..=12).contains(&dead_after), "declared dead after {dead_after} late rounds");
    assert!(now.saturating_duration_since(T0) > interval * 12, "more than 12 intervals of wall time passed");
    assert_eq!(node.metrics().pauses, 0, "lateness is not a pause");
}

/// A caller's clock that steps back (a wall clock set back, say) does not
/// freeze the node until the clock catches up: it counts the step as no time,
/// keeps gossiping at the clock's pace, and its deadlines follow the clock's new
/// reading (found by the `protocol_ops` fuzzer: a frozen node kept vouching for
/// a node that had left, long after everyone else forgot it).
#[test]
fn a_clock_stepping_back_does_not_freeze_the_node() {
    let mut node = node();
    let silent = peer("silent", 1, 7001);
    introduce_live(&mut node, &silent);
    let interval = config().gossip_interval;
    let hour = Duration::from_secs(3_600);
    // An hour ahead, then back to the start.
    node.handle_timeout(T0 + hour);
    let rounds_before = node.metrics().gossip_rounds;
    let mut now = T0 + interval;
    for _ in 0..20 {
        node.handle_timeout(now);
        let deadline = node.poll_timeout().expect("a deadline");
        assert!(
            deadline > now && deadline <= now + interval,
            "the deadline {deadline:?} follows the clock at {now:?}"
        );
        now = deadline;
    }
    assert!(node.metrics().gossip_rounds >= rounds_before + 19, "it kept gossiping");
    // And its failure detector kept time: the silent peer is dead (and
    // watched no more).
    assert_eq!(node.tracked_status(&silent), Some(NodeStatus::Dead));
    assert_eq!(node.phi(&silent, now), None);
}

/// A refused datagram changes nothing, the node's clock included: one handed in
/// with an earlier time (the caller's clock stepped back) leaves the deadline
/// where it was; an accepted one moves it onto the clock's new reading (found
/// by the `protocol_ops` fuzzer).
#[test]
fn a_refused_datagram_does_not_move_the_clock() {
    let mut node = node();
    let later = T0 + Duration::from_secs(60);
    node.handle_timeout(later);
    let deadline = node.poll_timeout();
    // `feed` checks that the refusal moved no timer (nor anything else).
    let refused = ack("another-cluster", Vec::new());
    assert!(feed(&mut node, T0, addr(7001), &refused).is_err());
    assert_eq!(node.poll_timeout(), deadline, "a refused datagram moved the clock");
    let accepted = ack(CLUSTER, Vec::new());
    node.handle_datagram(T0, addr(7001), &accepted).unwrap();
    let moved = node.poll_timeout().expect("a deadline");
    assert!(moved <= T0 + config().gossip_interval, "the deadline follows the clock stepped back: {moved:?}");
}

/// A node that removed a dead peer, then jumped ahead in time (a pause, or its
/// clock stepping forward), still refuses stale news of that peer: its memory
/// of the removal lasts the jump longer, since the rest of the cluster did not
/// age with it (found by the `protocol_ops` fuzzer).
#[test]
fn a_jump_ahead_does_not_cut_the_memory_of_a_removal_short() {
    let mut node = node();
    let gone = peer("gone", 1, 7001);
    introduce_live(&mut node, &gone);
    let mut now = T0;
    while node.tracked_state(&gone).is_some() {
        now = node.poll_timeout().expect("a deadline");
        node.handle_timeout(now);
        assert!(now < T0 + Duration::from_secs(600), "the silent peer was never removed");
    }
    node.handle_timeout(now + Duration::from_secs(3_600));
    assert_eq!(node.metrics().pauses, 1);
    // Two rounds on, past the doubt that follows a pause.
    for _ in 0..2 {
        now = node.poll_timeout().expect("a deadline");
        node.handle_timeout(now);
    }
    // Stale gossip of it, with the heartbeat it was removed with, from a peer.
    let stale = full(gone.clone(), 2, &[]);
    node.handle_datagram(now, addr(7002), &ack(CLUSTER, vec![stale])).unwrap();
    assert!(node.tracked_state(&gone).is_none(), "stale gossip brought a removed node back after the jump");
}

/// Every input returns at the largest timestamp, and the node keeps working:
/// a caller's clock (or a bug in it) at `Timestamp::MAX` cannot make
/// `handle_timeout` loop forever re-arming a saturated deadline (it did).
#[test]
fn every_input_returns_at_the_largest_timestamp() {
    let mut node = node();
    let other = peer("other", 1, 7001);
    introduce_live(&mut node, &other);
    let max = Timestamp::MAX;
    let before = node.metrics().gossip_rounds;
    for round in 1..=3 {
        node.handle_timeout(max);
        assert_eq!(node.metrics().gossip_rounds, before + round, "one round per call, not a loop");
    }
    assert_eq!(node.poll_timeout(), Some(max), "the next deadline saturates");
    node.set(max, "late", "value").unwrap();
    node.set_with_ttl(max, "ttl", "value").unwrap();
    node.delete(max, "late").unwrap();
    node.delete_after_ttl(max, "ttl").unwrap();
    node.gossip_with(max, addr(7001));
    let beat = full(other.clone(), 9, &[("k", "v", 1)]);
    node.handle_datagram(max, addr(7001), &ack(CLUSTER, vec![beat])).unwrap();
    assert_eq!(node.tracked_state(&other).unwrap().get("k"), Some("v"));
    let _ = node.phi(&other, max);
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    node.leave(max);
    assert!(node.poll_transmit().is_some(), "farewells still go out");
}
