//! A node that already knows a cluster: a few dozen peers with keys, some live,
//! some dead, some left, with tombstones, and outputs still queued.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat_core::testing::datagrams::{ack, full_with, known};
use chitchat_core::wire::{KeyValueUpdate, NodeDelta, ValueUpdate};
use chitchat_core::{Chitchat, Config, Fingerprint, NodeId, Timestamp};

/// The cluster id of every fuzzed node.
pub const CLUSTER: &str = "fuzz";
/// Peers the node knows.
pub const PEERS: u16 = 30;
/// Keys each peer holds (before deletions).
pub const KEYS: u64 = 3;
/// When the known cluster is ready: inputs arrive from then on.
pub const READY_AT: Timestamp = Timestamp::from_millis(1_200);

/// Small limits, so that fuzzed input reaches every bound: the node table is
/// nearly full, keys, values and names have short maximums, queues and the
/// budget for answers to unvalidated addresses are short.
pub fn config() -> Config {
    Config {
        cluster_id: CLUSTER.into(),
        max_datagram_size: 2_048,
        max_key_len: 16,
        max_value_len: 64,
        max_keys_per_node: 8,
        max_nodes: 40,
        max_node_name_len: 24,
        max_cluster_id_len: 16,
        max_pending_events: 256,
        max_pending_transmits: 16,
        // Low enough that a few answers to unvalidated addresses in a burst
        // spend it.
        max_unvalidated_bytes_per_sec: 4 * 1_024,
        ..Config::local_test()
    }
}

/// The fuzzed node's identity.
pub fn self_id() -> NodeId {
    NodeId::new("self", 5, addr(7000))
}

/// A loopback address.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The identity of peer `i`.
pub fn peer_id(i: u16) -> NodeId {
    NodeId::new(format!("node-{i:02}"), 1, addr(10_000 + i))
}

/// Every peer's identity.
pub fn peer_ids() -> Vec<NodeId> {
    (0..PEERS).map(peer_id).collect()
}

/// Every fingerprint the node tracks, itself included.
pub fn fingerprints() -> Vec<Fingerprint> {
    std::iter::once(self_id()).chain(peer_ids()).map(|id| id.fingerprint()).collect()
}

fn key(i: u16, k: u64) -> String {
    // Every third key starts with a multi-byte character.
    if k == 2 { format!("é-{i}") } else { format!("key-{k}") }
}

/// Peer `i`'s full section: its keys, the last one deleted for odd peers.
fn peer_section(i: u16, heartbeat: u64) -> NodeDelta {
    let key_values = (1..=KEYS)
        .map(|version| KeyValueUpdate {
            key: key(i, version).into(),
            version,
            value: if version == KEYS && i % 2 == 1 {
                ValueUpdate::Deleted
            } else if version == 1 && i % 5 == 0 {
                ValueUpdate::SetWithTtl(format!("ttl-{i}").into())
            } else {
                ValueUpdate::Set(format!("value-{i}-{version}-ñ").into())
            },
        })
        .collect();
    full_with(peer_id(i), heartbeat, key_values)
}

/// Peer `i`'s farewell, with no new record.
fn farewell(i: u16) -> NodeDelta {
    NodeDelta { left: true, ..known(&peer_id(i), KEYS, KEYS, &[]) }
}

/// Peer `i`'s accusations of `accused` (at heartbeat 1), after its keys.
fn accusations(i: u16, accused: std::ops::Range<u16>) -> NodeDelta {
    let key_values: Vec<KeyValueUpdate> = accused
        .enumerate()
        .map(|(n, j)| KeyValueUpdate {
            key: format!("\0dead:{:016x}", peer_id(j).fingerprint().as_u64()).into(),
            version: KEYS + 1 + n as u64,
            value: ValueUpdate::Set("1".into()),
        })
        .collect();
    let max = KEYS + key_values.len() as u64;
    NodeDelta { key_values, ..known(&peer_id(i), KEYS, max, &[]) }
}

/// A node that knows [`PEERS`] peers: peers 0..20 are live, 20..27 dead
/// (every live peer accuses them), 27..30 left. Some events and datagrams stay
/// queued. Deterministic: two calls build the same node.
pub fn known_node() -> Chitchat {
    let mut node =
        Chitchat::new(config(), self_id(), [("own", "mine"), ("ключ", "значение")], Timestamp::ZERO)
            .expect("a valid configuration");
    node.set_seed_addrs([addr(10_000), addr(10_001)]);
    // Peer 0 proves its address (it answers a Syn of the node, echoing its
    // token), so that what it says of the others is taken and relayed.
    chitchat_core::testing::validate_peer(&mut node, Timestamp::ZERO, &peer_id(0));
    let intro = ack(CLUSTER, (0..PEERS).map(|i| peer_section(i, 1)).collect());
    node.handle_datagram(Timestamp::ZERO, addr(10_000), &intro).expect("the introduction applies");
    let mut now = Timestamp::ZERO;
    for round in 0..12u64 {
        now += Duration::from_millis(100);
        let sections = match round {
            1 => (27..PEERS).map(farewell).collect(),
            2 => (0..20).map(|i| accusations(i, 20..27)).collect(),
            _ => Vec::new(),
        };
        if !sections.is_empty() {
            node.handle_datagram(now, addr(10_000), &ack(CLUSTER, sections)).expect("the news applies");
        }
        node.handle_timeout(now);
        // Drain most of the outputs, as a driver would, but not all of them.
        while chitchat_core::testing::queue_lengths(&node).0 > 2 && node.poll_transmit().is_some() {}
        while chitchat_core::testing::queue_lengths(&node).1 > 5 && node.poll_event().is_some() {}
    }
    debug_assert!(now <= READY_AT);
    node.handle_timeout(READY_AT);
    node
}

/// Panics unless [`known_node`] built what it says: live, dead and left peers,
/// and queued outputs. Deterministic, so checking once is enough.
pub fn assert_known_node_shape(node: &Chitchat) {
    let live = node.live_nodes().count();
    let dead = node.dead_nodes().count();
    let left = node.left_nodes().count();
    assert_eq!((live, dead, left), (21, 7, 3), "live (self included), dead and left peers");
    let (transmits, events, _) = chitchat_core::testing::queue_lengths(node);
    assert!(transmits > 0 && events > 0, "outputs stay queued: {transmits} datagrams, {events} events");
}
