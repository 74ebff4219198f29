//! Liveness: first-hand probes, accusations, quorums and refutations, in the
//! simulator and on a lone node fed crafted datagrams.

use std::time::Duration;

use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};
use chitchat_core::testing::datagrams::{ack, full, known};
use chitchat_core::wire::{KeyValueUpdate, NodeDelta, ValueUpdate};
use chitchat_core::{Chitchat, Config, Event, NodeId, NodeStatus, Timestamp};

fn cluster(seed: u64, count: usize) -> (Simulation, Vec<NodeIndex>) {
    let mut sim = Simulation::new(seed);
    let nodes: Vec<NodeIndex> =
        (0..count).map(|i| sim.add_node(&format!("node-{i}"), Config::local_test())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    assert!(sim.run_until(rounds(30), |sim| sim.all_see_all_live()).unwrap());
    // Every node vouched for everywhere: subjects settled.
    sim.run_for(rounds(20)).unwrap();
    (sim, nodes)
}

fn rounds(n: u32) -> Duration {
    Config::local_test().gossip_interval * n
}

fn watches(sim: &Simulation, observer: NodeIndex, subject: NodeIndex) -> bool {
    sim.node(observer).phi(sim.node_id(subject), sim.now()).is_some()
}

fn dead_events(events: &[Event], about: &NodeId) -> usize {
    events.iter().filter(|event| **event == Event::NodeDead(about.clone())).count()
}

/// A and B cannot reach each other (every datagram between them is lost),
/// but both reach the others: each accuses the other, each refutes, and
/// nobody ever sees either dead.
#[test]
fn a_broken_link_between_two_nodes_makes_neither_dead() {
    let (mut sim, nodes) = cluster(21, 5);
    // Two nodes that watch each other, so that the broken link is seen from
    // both ends.
    let (a, b) = nodes
        .iter()
        .flat_map(|a| nodes.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a != b && watches(&sim, *a, *b) && watches(&sim, *b, *a))
        .expect("in five nodes watching three each, some pairs watch each other");
    let (a_id, b_id) = (sim.node_id(a).clone(), sim.node_id(b).clone());
    let cut = NetworkConfig { loss: 1.0, ..NetworkConfig::default() };
    sim.set_link(a, b, cut.clone());
    sim.set_link(b, a, cut);
    for node in &nodes {
        sim.take_events(*node);
    }
    sim.run_for(rounds(300)).unwrap();
    for node in &nodes {
        let events = sim.take_events(*node);
        assert_eq!(dead_events(&events, &a_id), 0, "{node:?} saw A dead");
        assert_eq!(dead_events(&events, &b_id), 0, "{node:?} saw B dead");
    }
    assert!(sim.all_see_all_live());
    // The link was seen broken: the two ends accused each other and refuted.
    for (end, other) in [(a, b), (b, a)] {
        let metrics = sim.node(end).metrics();
        assert!(metrics.accusations > 0, "{end:?} accused {other:?}");
        assert!(metrics.accusations_refuted > 0, "{end:?} refuted");
    }
    assert_eq!(sim.stats().false_dead, 0);
}

/// A node cut off from the two others: they see it dead as soon as both
/// accuse it; it, alone, sees them dead once they failed to refute its
/// accusations for thirty rounds; and everyone is live again after the heal.
#[test]
fn a_node_alone_in_a_partition_sees_the_others_dead_and_everyone_rejoins() {
    let (mut sim, nodes) = cluster(22, 3);
    let (alone, rest) = nodes.split_at(1);
    sim.partition(&[alone, rest]);
    let alone_id = sim.node_id(alone[0]).clone();
    let rest_ids: Vec<NodeId> = rest.iter().map(|node| sim.node_id(*node).clone()).collect();
    let others_see_it_dead = |sim: &Simulation| {
        rest.iter().all(|node| sim.node(*node).node_status(&alone_id) == Some(NodeStatus::Dead))
    };
    assert!(sim.run_until(rounds(30), others_see_it_dead).unwrap(), "a quorum of its observers accused it");
    let it_sees_them_dead = |sim: &Simulation| {
        rest_ids.iter().all(|id| sim.node(alone[0]).node_status(id) == Some(NodeStatus::Dead))
    };
    assert!(sim.run_until(rounds(60), it_sees_them_dead).unwrap(), "its lone verdicts");
    sim.heal();
    assert!(sim.run_until(rounds(60), |sim| sim.all_see_all_live() && sim.converged()).unwrap());
}

/// A crashed node is seen dead by every node, and a restart (a new
/// generation) is live everywhere, with no false verdict on the way.
#[test]
fn a_crash_in_a_hundred_nodes_is_seen_by_all_with_no_false_dead() {
    let (mut sim, nodes) = cluster(23, 100);
    let victim = nodes[37];
    let victim_id = sim.node_id(victim).clone();
    sim.crash(victim);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see(&victim_id, NodeStatus::Dead)).unwrap());
    assert_eq!(sim.stats().false_dead, 0);
    sim.restart(victim);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see_all_live()).unwrap());
    assert_eq!(sim.stats().false_dead, 0);
}

/// A round trip of two and a half gossip intervals (a distant region, or a
/// short interval): every answer comes after later questions left for the
/// same peer. The cluster still forms (a newcomer's seed answers each round's
/// `Syn` late), nobody is ever seen dead, and a crash is still found.
#[test]
fn answers_slower_than_the_gossip_interval_are_answers() {
    let interval = Config::local_test().gossip_interval;
    let mut sim = Simulation::new(24);
    sim.set_network(NetworkConfig { latency: interval * 5 / 4, ..NetworkConfig::default() });
    let nodes: Vec<NodeIndex> =
        (0..30).map(|i| sim.add_node(&format!("node-{i}"), Config::local_test())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    assert!(sim.run_until(rounds(60), |sim| sim.all_see_all_live()).unwrap());
    sim.run_for(rounds(200)).unwrap();
    assert_eq!(sim.stats().false_dead, 0);
    let victim = nodes[11];
    let victim_id = sim.node_id(victim).clone();
    sim.crash(victim);
    assert!(sim.run_until(rounds(60), |sim| sim.all_see(&victim_id, NodeStatus::Dead)).unwrap());
    assert_eq!(sim.stats().false_dead, 0);
}

// ---- one node, crafted datagrams --------------------------------------------

const CLUSTER: &str = "liveness";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { cluster_id: CLUSTER.into(), ..Config::local_test() }
}

fn peer(i: u16) -> NodeId {
    NodeId::new(format!("peer-{i}"), 1, addr(8_000 + i))
}

/// `accuser`'s section (it held nothing before) with accusations of
/// `accused` at `heartbeat`.
fn accusing(accuser: &NodeId, accused: &[(&NodeId, u64)]) -> NodeDelta {
    let records: Vec<KeyValueUpdate> = accused
        .iter()
        .enumerate()
        .map(|(i, (id, heartbeat))| KeyValueUpdate {
            key: format!("\0dead:{:016x}", id.fingerprint().as_u64()).into(),
            version: i as u64 + 1,
            value: ValueUpdate::Set(heartbeat.to_string().into()),
        })
        .collect();
    let max = records.len() as u64;
    NodeDelta { key_values: records, ..known(accuser, 0, max, &[]) }
}

/// A node that knows four peers, vouched for by peer 0 (validated).
fn node_with_peers() -> (Chitchat, Vec<NodeId>) {
    let mut node = Chitchat::new(config(), NodeId::new("me", 1, addr(7_000)), [("k", "v")], T0).unwrap();
    let peers: Vec<NodeId> = (0..4).map(peer).collect();
    chitchat_core::testing::validate_peer(&mut node, T0, &peers[0]);
    let intro = ack(CLUSTER, peers[1..].iter().map(|id| full(id.clone(), 1, &[])).collect());
    node.handle_datagram(T0, peers[0].gossip_addr(), &intro).unwrap();
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    (node, peers)
}

fn round(node: &mut Chitchat, now: Timestamp) -> Vec<Event> {
    node.handle_timeout(now);
    while node.poll_transmit().is_some() {}
    std::iter::from_fn(|| node.poll_event()).collect()
}

#[test]
fn a_quorum_of_accusations_makes_a_node_dead_and_its_refutation_brings_it_back() {
    let (mut node, peers) = node_with_peers();
    let victim = &peers[3];
    // One accuser is no quorum: a node's observers are three.
    let one = ack(CLUSTER, vec![accusing(&peers[1], &[(victim, 1)])]);
    node.handle_datagram(T0, peers[0].gossip_addr(), &one).unwrap();
    let events = round(&mut node, T0 + Duration::from_millis(100));
    assert_eq!(node.node_status(victim), Some(NodeStatus::Live), "{events:?}");
    // A second one is.
    let two = ack(CLUSTER, vec![accusing(&peers[2], &[(victim, 1)])]);
    node.handle_datagram(T0, peers[0].gossip_addr(), &two).unwrap();
    let events = round(&mut node, T0 + Duration::from_millis(200));
    assert!(events.contains(&Event::NodeDead(victim.clone())), "{events:?}");
    // The accused node raises its heartbeat past the accusations: it refuted.
    let refuted = NodeDelta { heartbeat: 2, ..known(victim, 0, 0, &[]) };
    node.handle_datagram(T0, peers[0].gossip_addr(), &ack(CLUSTER, vec![refuted])).unwrap();
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(events.contains(&Event::NodeLive(victim.clone())), "{events:?}");
    assert_eq!(node.node_status(victim), Some(NodeStatus::Live));
    // Accusations at the old heartbeat are void.
    round(&mut node, T0 + Duration::from_millis(300));
    assert_eq!(node.node_status(victim), Some(NodeStatus::Live));
}

#[test]
fn a_node_refutes_accusations_of_itself_and_hides_them_from_the_application() {
    let (mut node, peers) = node_with_peers();
    let me = node.self_id().clone();
    let before = node.node_state(&me).unwrap().heartbeat();
    let accusation = ack(CLUSTER, vec![accusing(&peers[1], &[(&me, before)])]);
    node.handle_datagram(T0, peers[0].gossip_addr(), &accusation).unwrap();
    // The accusation is the protocol's: no key event, and not in the state
    // the application reads.
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(!events.iter().any(|event| matches!(event, Event::KeySet { .. })), "{events:?}");
    let accuser = node.node_state(&peers[1]).unwrap();
    assert_eq!(accuser.key_values().count(), 0);
    assert_eq!(accuser.num_records(), 0);
    assert_eq!(accuser.max_version(), 1, "the record is held (and relayed)");
    round(&mut node, T0 + Duration::from_millis(100));
    assert_eq!(node.node_state(&me).unwrap().heartbeat(), before + 1);
    assert_eq!(node.metrics().accusations_refuted, 1);
    // Refuted once: the same accusation asks for nothing more.
    round(&mut node, T0 + Duration::from_millis(200));
    assert_eq!(node.node_state(&me).unwrap().heartbeat(), before + 1);
}

#[test]
fn a_ping_is_answered_only_for_this_node_and_a_pong_counts_only_as_an_answer() {
    let (mut node, peers) = node_with_peers();
    let me = node.self_id().clone();
    let ping = |target: &NodeId| {
        chitchat_core::wire::encode(&chitchat_core::wire::Packet {
            token: Some(chitchat_core::wire::Token(*b"12345678")),
            ..chitchat_core::wire::Packet::new(
                CLUSTER,
                chitchat_core::wire::Message::Ping { target: target.fingerprint() },
            )
        })
    };
    node.handle_datagram(T0, addr(9_999), &ping(&me)).unwrap();
    let pong = node.poll_transmit().expect("a Pong");
    assert!(pong.bytes.len() <= ping(&me).len());
    assert_eq!(pong.to, addr(9_999));
    node.handle_datagram(T0, addr(9_999), &ping(&peers[1])).unwrap();
    assert!(node.poll_transmit().is_none(), "a Ping for another identity gets nothing");
    // A Pong answering nothing changes nothing.
    let stray = chitchat_core::wire::encode(&chitchat_core::wire::Packet {
        echo: Some(chitchat_core::wire::Token(*b"12345678")),
        ..chitchat_core::wire::Packet::new(CLUSTER, chitchat_core::wire::Message::Pong)
    });
    node.handle_datagram(T0, peers[1].gossip_addr(), &stray).unwrap();
    let metrics = node.metrics();
    assert_eq!((metrics.pongs_sent, metrics.pongs_received, metrics.probes_ignored), (1, 0, 2));
}
