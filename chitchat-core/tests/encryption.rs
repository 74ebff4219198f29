//! Authenticated encryption: hostile datagrams against a keyed node, replays,
//! and, in the simulator, a live key rotation and a migration from plaintext.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};
use chitchat_core::testing::datagrams::{ack, empty_digest, syn};
use chitchat_core::testing::{DatagramSealer, feed};
use chitchat_core::{
    Chitchat, Config, DatagramError, EncryptionMode, Event, Keyring, NodeId, NodeStatus, SecretKey,
    Timestamp, wire,
};

const CLUSTER: &str = "crypto-cluster";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { cluster_id: CLUSTER.into(), ..Config::local_test() }
}

fn key(byte: u8) -> SecretKey {
    SecretKey::from_bytes([byte; 32])
}

fn keyed_node(name: &str, port: u16, config: Config, key: Option<SecretKey>) -> Chitchat {
    let id = NodeId::new(name, 1, addr(port));
    let mut node = Chitchat::new(config, id, [("owner", name)], T0).unwrap();
    if let Some(key) = key {
        node.set_encryption(EncryptionMode::Required, Keyring::new(key), [port as u8; 16]).unwrap();
    }
    while node.poll_event().is_some() {}
    node
}

/// Runs one handshake opened by `a` with `b`; returns every datagram `a` received.
fn handshake(a: &mut Chitchat, b: &mut Chitchat, now: Timestamp) -> Vec<Vec<u8>> {
    let (a_addr, b_addr) = (a.self_id().gossip_addr(), b.self_id().gossip_addr());
    a.gossip_with(now, b_addr);
    let mut received_by_a = Vec::new();
    loop {
        let mut quiet = true;
        while let Some(transmit) = a.poll_transmit() {
            quiet = false;
            b.handle_datagram(now, a_addr, &transmit.bytes).unwrap();
        }
        while let Some(transmit) = b.poll_transmit() {
            quiet = false;
            a.handle_datagram(now, b_addr, &transmit.bytes).unwrap();
            received_by_a.push(transmit.bytes);
        }
        if quiet {
            break received_by_a;
        }
    }
}

/// Feeds `datagram` to `node` and checks that it is refused; [`feed`] checks
/// that it changed nothing and moved exactly the counters of its class.
fn refused(node: &mut Chitchat, datagram: &[u8], what: &str) -> DatagramError {
    feed(node, T0, addr(9), datagram).expect_err(what)
}

#[test]
fn keyed_nodes_exchange_sealed_datagrams() {
    let mut a = keyed_node("a", 7001, config(), Some(key(1)));
    let mut b = keyed_node("b", 7002, config(), Some(key(1)));
    let received = handshake(&mut a, &mut b, T0);
    assert!(!received.is_empty());
    assert!(received.iter().all(|datagram| wire::decode(datagram).is_err()), "nothing travels in clear");
    assert_eq!(a.node_state(b.self_id()).unwrap().get("owner"), Some("b"));
    assert_eq!(b.node_state(a.self_id()).unwrap().get("owner"), Some("a"));
}

#[test]
fn hostile_datagrams_are_refused_counted_and_change_nothing() {
    let mut a = keyed_node("a", 7001, config(), Some(key(1)));
    let mut b = keyed_node("b", 7002, config(), Some(key(1)));
    let genuine = handshake(&mut a, &mut b, T0).remove(0);
    while a.poll_event().is_some() {}
    let before = a.metrics().rejected;
    let mut expected = 0;

    // Replayed, after it was accepted.
    assert_eq!(refused(&mut a, &genuine, "a replay"), DatagramError::Replayed);
    expected += 1;
    // Tampered, at each byte position.
    for position in 0..genuine.len() {
        let mut tampered = genuine.clone();
        tampered[position] ^= 0x01;
        refused(&mut a, &tampered, &format!("byte {position} tampered"));
        expected += 1;
    }
    // Truncated, at every length.
    for len in 0..genuine.len() {
        refused(&mut a, &genuine[..len], &format!("truncated to {len}"));
        expected += 1;
    }
    // Forged: a well-formed header naming the right key, random bytes after.
    let mut forged = genuine[..32].to_vec();
    let mut rng = fastrand::Rng::with_seed(1);
    forged.extend((0..200).map(|_| rng.u8(..)));
    assert_eq!(refused(&mut a, &forged, "a forgery"), DatagramError::Unauthenticated);
    expected += 1;
    // Sealed with another key, and with the right key for another cluster.
    let mut stranger = keyed_node("c", 7003, config(), Some(key(2)));
    stranger.gossip_with(T0, addr(7001));
    let wrong_key = stranger.poll_transmit().unwrap().bytes;
    assert_eq!(refused(&mut a, &wrong_key, "another key"), DatagramError::UnknownKey(key(2).id()));
    let other_config = Config { cluster_id: "other".into(), ..config() };
    let mut other_cluster = keyed_node("d", 7004, other_config, Some(key(1)));
    other_cluster.gossip_with(T0, addr(7001));
    let other = other_cluster.poll_transmit().unwrap().bytes;
    assert_eq!(refused(&mut a, &other, "another cluster"), DatagramError::Unauthenticated);
    // Plaintext, even a Syn of this cluster, is neither accepted nor answered.
    let mut plain = keyed_node("e", 7005, config(), None);
    plain.gossip_with(T0, addr(7001));
    let plaintext = plain.poll_transmit().unwrap().bytes;
    assert_eq!(refused(&mut a, &plaintext, "plaintext"), DatagramError::PlaintextRefused);
    let plain_other_cluster = ack("other", Vec::new());
    assert_eq!(refused(&mut a, &plain_other_cluster, "plaintext"), DatagramError::PlaintextRefused);
    expected += 4;

    let after = a.metrics().rejected;
    assert_eq!(after.total - before.total, expected);
    assert_eq!(after.replayed - before.replayed, 1);
    assert_eq!(after.plaintext_refused - before.plaintext_refused, 2);
    assert!(after.unauthenticated - before.unauthenticated >= genuine.len() as u64);
    // And the genuine traffic still flows.
    handshake(&mut a, &mut b, T0 + Duration::from_millis(100));
}

/// Every datagram one node received over a run, replayed after the state moved
/// on (a new key version, a deletion, a departed node), changes nothing. The
/// nodes gossip in plaintext here, so that no replay filter stands in the way:
/// this is the protocol's own defense, which also covers replays the filter has
/// forgotten (after a restart of the receiver, say).
#[test]
fn replayed_datagrams_cannot_move_state_backwards_or_resurrect_anything() {
    let mut a = keyed_node("a", 7001, config(), None);
    let mut b = keyed_node("b", 7002, config(), None);
    let mut c = keyed_node("c", 7003, config(), None);
    let mut recorded = Vec::new();
    let mut now = T0;
    let step = |a: &mut Chitchat,
                b: &mut Chitchat,
                c: &mut Chitchat,
                recorded: &mut Vec<Vec<u8>>,
                now: &mut Timestamp| {
        *now += Duration::from_millis(100);
        recorded.extend(handshake(a, b, *now));
        if !c.has_left() {
            recorded.extend(handshake(a, c, *now));
            handshake(b, c, *now);
        }
    };
    a.set(now, "color", "red").unwrap();
    step(&mut a, &mut b, &mut c, &mut recorded, &mut now);
    b.set(now, "color", "blue").unwrap();
    c.set(now, "shape", "square").unwrap();
    step(&mut a, &mut b, &mut c, &mut recorded, &mut now);
    b.delete(now, "color").unwrap();
    step(&mut a, &mut b, &mut c, &mut recorded, &mut now);
    c.leave(now);
    while let Some(transmit) = c.poll_transmit() {
        if transmit.to == addr(7001) {
            a.handle_datagram(now, addr(7003), &transmit.bytes).unwrap();
            recorded.push(transmit.bytes);
        } else {
            b.handle_datagram(now, addr(7003), &transmit.bytes).unwrap();
        }
    }
    step(&mut a, &mut b, &mut c, &mut recorded, &mut now);
    let c_id = c.self_id().clone();
    assert_eq!(a.node_status(&c_id), Some(NodeStatus::Left));
    while a.poll_event().is_some() {}
    while a.poll_transmit().is_some() {}

    let b_state = |a: &Chitchat| {
        let state = a.node_state(b.self_id()).unwrap();
        (state.max_version(), state.heartbeat(), state.get("color").map(str::to_string))
    };
    let before = (a.snapshot(), b_state(&a));
    for datagram in recorded.iter().rev().chain(recorded.iter()) {
        let _ = feed(&mut a, now, addr(7002), datagram);
        while a.poll_transmit().is_some() {}
        for event in std::iter::from_fn(|| a.poll_event()) {
            assert!(
                !matches!(event, Event::KeySet { .. } | Event::NodeLive(_) | Event::NodeJoined(_)),
                "a replay caused {event:?}"
            );
        }
    }
    assert_eq!((a.snapshot(), b_state(&a)), before, "replays changed the state");
    assert_eq!(b_state(&a).2, None, "the deleted key stays deleted");
    assert_eq!(a.node_status(&c_id), Some(NodeStatus::Left), "the departed node stays departed");
}

fn rounds(n: u32) -> Duration {
    Config::local_test().gossip_interval * n
}

fn lossy() -> NetworkConfig {
    NetworkConfig {
        latency: Duration::from_millis(2),
        jitter: Duration::from_millis(5),
        loss: 0.05,
        ..NetworkConfig::default()
    }
}

/// Applies `change` to each node in turn, 10 ms of virtual time apart: a
/// rolling change across a running cluster.
fn rolling(sim: &mut Simulation, nodes: &[NodeIndex], mut change: impl FnMut(&mut Simulation, NodeIndex)) {
    for &node in nodes {
        change(sim, node);
        sim.run_for(Duration::from_millis(10)).unwrap();
    }
}

#[test]
fn a_hundred_nodes_rotate_their_key_under_loss_with_no_false_dead() {
    let mut sim = Simulation::new(21);
    sim.set_network(lossy());
    sim.set_record_events(false);
    let nodes: Vec<NodeIndex> =
        (0..100).map(|i| sim.add_node(&format!("node-{i:03}"), Config::local_test())).collect();
    for &node in &nodes {
        sim.set_encryption(node, EncryptionMode::Required, Keyring::new(key(1)));
    }
    sim.set_seeds_all(&nodes[..3]);
    assert!(sim.run_until(rounds(100), |sim| sim.all_see_all_live()).unwrap(), "the keyed cluster forms");
    let (old, new) = (key(1).id(), key(2).id());

    // 1: install the new key everywhere; 2: make it primary everywhere; 3: remove
    // the old key. Each step is rolled over the running cluster.
    rolling(&mut sim, &nodes, |sim, node| {
        sim.with_node(node, |chitchat, _| chitchat.add_key(key(2))).unwrap();
    });
    sim.run_for(rounds(5)).unwrap();
    rolling(&mut sim, &nodes, |sim, node| {
        sim.with_node(node, |chitchat, _| chitchat.set_primary_key(new)).unwrap()
    });
    let writer = nodes[42];
    sim.with_node(writer, |chitchat, now| chitchat.set(now, "during", "rotation")).unwrap();
    sim.run_for(rounds(5)).unwrap();
    rolling(&mut sim, &nodes, |sim, node| {
        sim.with_node(node, |chitchat, _| chitchat.remove_key(old)).unwrap()
    });
    sim.run_for(rounds(20)).unwrap();

    assert_eq!(sim.stats().false_dead, 0, "a node was wrongly seen dead during the rotation");
    assert!(sim.all_see_all_live());
    let writer_id = sim.node_id(writer).clone();
    assert!(sim.all_have_key(&writer_id, "during", "rotation"));
    for &node in &nodes {
        assert_eq!(sim.node(node).keyring().unwrap().key_ids(), [new]);
        let rejected = sim.node(node).metrics().rejected;
        assert_eq!(rejected.plaintext_refused, 0);
    }
    assert!(sim.stats().lost > 0);
}

#[test]
fn a_plaintext_cluster_migrates_to_required_encryption_without_downtime() {
    let mut sim = Simulation::new(22);
    sim.set_network(lossy());
    sim.set_record_events(false);
    let nodes: Vec<NodeIndex> =
        (0..30).map(|i| sim.add_node(&format!("node-{i:02}"), Config::local_test())).collect();
    sim.set_seeds_all(&nodes[..2]);
    assert!(sim.run_until(rounds(60), |sim| sim.all_see_all_live()).unwrap());

    // 1: install the keyring everywhere, still sending plaintext.
    rolling(&mut sim, &nodes, |sim, node| {
        sim.set_encryption(node, EncryptionMode::Off, Keyring::new(key(7)))
    });
    sim.run_for(rounds(5)).unwrap();
    // 2: seal everything, still accepting plaintext.
    rolling(&mut sim, &nodes, |sim, node| {
        sim.with_node(node, |chitchat, _| {
            chitchat.set_encryption_mode(EncryptionMode::EncryptAcceptPlaintext)
        })
        .unwrap()
    });
    sim.run_for(rounds(5)).unwrap();
    // 3: require authentication.
    rolling(&mut sim, &nodes, |sim, node| {
        sim.with_node(node, |chitchat, _| chitchat.set_encryption_mode(EncryptionMode::Required)).unwrap()
    });
    sim.run_for(rounds(10)).unwrap();
    assert_eq!(sim.stats().false_dead, 0);
    assert_eq!(sim.stats().rejected, 0, "no datagram was refused during the migration");
    assert!(sim.all_see_all_live());

    // A restarted node keeps its keys (with a new nonce salt) and rejoins.
    sim.restart(nodes[5]);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see_all_live()).unwrap(), "the restarted node rejoins");

    // A node without the key can no longer join, nor learn anything.
    let intruder = sim.add_node("intruder", Config::local_test());
    sim.set_seeds(intruder, &nodes[..2]);
    sim.run_for(rounds(30)).unwrap();
    assert_eq!(sim.live_names(intruder), ["intruder"]);
    assert_eq!(sim.node(intruder).node_states().count(), 1, "the intruder learned nothing");
    let intruder_id = sim.node_id(intruder).clone();
    for &node in &nodes {
        assert!(sim.node(node).node_state(&intruder_id).is_none());
    }
    let refused: u64 = nodes.iter().map(|&node| sim.node(node).metrics().rejected.plaintext_refused).sum();
    assert!(refused > 0);
}

#[test]
fn encryption_is_refused_when_the_sealed_envelope_would_not_leave_room_for_a_key() {
    // Valid in plaintext, with barely room for the largest key (streams off:
    // with them, a key too large for a datagram would travel on them).
    let mut tight =
        Config { max_datagram_size: 1_000, max_key_len: 16, max_value_len: 1, max_streams: 0, ..config() };
    while tight.validate().is_ok() {
        tight.max_value_len += 1;
    }
    tight.max_value_len -= 1;
    let mut node = keyed_node("a", 7001, tight, None);
    let error = node.set_encryption(EncryptionMode::Required, Keyring::new(key(1)), [0; 16]).unwrap_err();
    assert!(matches!(error, chitchat_core::ConfigError::DatagramTooSmallForOneKey { .. }));
    assert!(node.keyring().is_none());
    assert_eq!(node.encryption_mode(), EncryptionMode::Off);
}

/// Datagrams queued in plaintext before encryption is turned on leave sealed
/// (found by the `sealed_datagram` fuzzer): nothing queued leaks in the clear.
#[test]
fn datagrams_queued_before_encryption_is_turned_on_leave_sealed() {
    let mut a = keyed_node("a", 7101, config(), None);
    let mut b = keyed_node("b", 7102, config(), Some(key(7)));
    a.gossip_with(T0, b.self_id().gossip_addr());
    a.handle_timeout(T0);
    let (queued, _, _) = chitchat_core::testing::queue_lengths(&a);
    assert!(queued >= 1, "a has plaintext datagrams queued");
    a.set_encryption(EncryptionMode::Required, Keyring::new(key(7)), [1; 16]).unwrap();
    let mut sent = 0;
    while let Some(transmit) = a.poll_transmit() {
        sent += 1;
        assert!(wire::decode(&transmit.bytes).is_err(), "a plaintext datagram left after encryption was on");
        b.handle_datagram(T0, a.self_id().gossip_addr(), &transmit.bytes).expect("b opens what a sealed");
    }
    assert_eq!(sent, queued);
    assert_eq!(a.metrics().datagrams_sent, queued as u64);
}

/// A sealed `Syn` naming another cluster inside (only a key holder can make
/// one) is answered with `BadCluster` once; a replay of it is refused, not
/// answered again (found by the `sealed_datagram` fuzzer).
#[test]
fn a_sealed_syn_of_another_cluster_is_answered_once() {
    let mut a = keyed_node("a", 7201, config(), Some(key(3)));
    let mut sealer = DatagramSealer::new(Keyring::new(key(3)), [8; 16]);
    let plain = syn("elsewhere", empty_digest());
    let sealed = sealer.seal(plain, CLUSTER).unwrap();
    a.handle_datagram(T0, addr(9), &sealed).expect("answered");
    assert!(a.poll_transmit().is_some(), "BadCluster sent");
    assert_eq!(a.metrics().bad_cluster_sent, 1);
    assert_eq!(refused(&mut a, &sealed, "a replayed Syn"), DatagramError::Replayed);
    assert_eq!(a.metrics().bad_cluster_sent, 1);
}
