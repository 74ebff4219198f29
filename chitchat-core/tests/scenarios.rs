//! Scenarios in virtual time over the simulator's in-process network: no sockets,
//! no sleeps, fully deterministic.

use std::time::Duration;

use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};
use chitchat_core::{Config, Event, NodeStatus};

/// `count` nodes with `config`, all seeded with the first.
fn cluster(seed: u64, count: usize, config: Config) -> (Simulation, Vec<NodeIndex>) {
    let mut sim = Simulation::new(seed);
    let nodes: Vec<NodeIndex> =
        (0..count).map(|i| sim.add_node(&format!("node-{i}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    (sim, nodes)
}

fn rounds(n: u32) -> Duration {
    Config::local_test().gossip_interval * n
}

/// 100 nodes at 1,400-byte datagrams (their `Syn`s hash ranges and list
/// nobody), all live, and settled: the cold start's rumors have run out
/// (they last 2 + ⌈log10(101)⌉ = 5 rounds). Events are not recorded.
fn settled_hundred(seed: u64) -> (Simulation, Vec<NodeIndex>) {
    let config = Config { max_datagram_size: 1_400, ..Config::local_test() };
    let (mut sim, nodes) = cluster(seed, 100, config);
    sim.set_record_events(false);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see_all_live()).unwrap());
    sim.run_for(rounds(10)).unwrap();
    (sim, nodes)
}

#[test]
fn two_nodes_sync_their_keys_in_one_handshake() {
    let (mut sim, nodes) = cluster(1, 2, Config::local_test());
    let (a, b) = (nodes[0], nodes[1]);
    sim.with_node(a, |node, now| node.set(now, "color", "red")).unwrap();
    sim.with_node(b, |node, now| node.set(now, "shape", "square")).unwrap();
    assert!(sim.run_until(rounds(3), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    let b_id = sim.node_id(b).clone();
    let a_id = sim.node_id(a).clone();
    assert_eq!(sim.node(a).node_state(&b_id).unwrap().get("shape"), Some("square"));
    assert_eq!(sim.node(b).node_state(&a_id).unwrap().get("color"), Some("red"));
    let events = sim.take_events(b);
    assert!(events.contains(&Event::NodeJoined(a_id.clone())));
    assert!(events.iter().any(|event| matches!(event, Event::KeySet { node, key, value, .. }
        if *node == a_id && key == "color" && value == "red")));
}

#[test]
fn five_nodes_converge() {
    let (mut sim, nodes) = cluster(2, 5, Config::local_test());
    for (i, node) in nodes.iter().enumerate() {
        sim.with_node(*node, |node, now| node.set(now, "index", &i.to_string())).unwrap();
    }
    assert!(sim.run_until(rounds(20), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    assert_eq!(sim.stats().rejected, 0);
}

#[test]
fn a_crashed_node_is_seen_dead_then_live_again_after_restart() {
    let (mut sim, nodes) = cluster(3, 5, Config::local_test());
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let victim = nodes[3];
    let old_id = sim.node_id(victim).clone();
    sim.crash(victim);
    assert!(
        sim.run_until(rounds(40), |sim| sim.all_see(&old_id, NodeStatus::Dead)).unwrap(),
        "crash detected"
    );
    sim.restart(victim);
    let new_id = sim.node_id(victim).clone();
    assert_eq!(new_id.generation(), old_id.generation() + 1);
    assert!(sim.run_until(rounds(30), |sim| sim.all_see_all_live() && sim.none_track(&old_id)).unwrap());
    let events = sim.take_events(nodes[1]);
    assert!(events.contains(&Event::NodeDead(old_id.clone())));
    assert!(events.contains(&Event::NodeRemoved(old_id.clone())));
    assert!(events.contains(&Event::NodeRestarted { previous: old_id, current: new_id }));
}

#[test]
fn a_dead_node_is_not_gossiped_to_a_node_that_joins_later() {
    let (mut sim, nodes) = cluster(4, 4, Config::local_test());
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let dead_id = sim.node_id(nodes[3]).clone();
    sim.crash(nodes[3]);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see(&dead_id, NodeStatus::Dead)).unwrap());
    let newcomer = sim.add_node("newcomer", Config::local_test());
    sim.set_seeds(newcomer, &[nodes[0]]);
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    sim.run_for(rounds(10)).unwrap();
    assert!(sim.node(newcomer).node_state(&dead_id).is_none());
    assert!(!sim.take_events(newcomer).contains(&Event::NodeJoined(dead_id)));
}

#[test]
fn a_partition_heals() {
    let (mut sim, nodes) = cluster(5, 6, Config::local_test());
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let (left, right) = nodes.split_at(3);
    sim.partition(&[left, right]);
    let right_id = sim.node_id(right[0]).clone();
    assert!(
        sim.run_until(rounds(60), |sim| sim.node(left[1]).node_status(&right_id) == Some(NodeStatus::Dead))
            .unwrap()
    );
    sim.heal();
    assert!(sim.run_until(rounds(60), |sim| sim.all_see_all_live() && sim.converged()).unwrap());
}

#[test]
fn a_dead_node_is_removed_after_the_grace_period() {
    let config = Config::local_test();
    let grace = config.dead_node_grace_period;
    let (mut sim, nodes) = cluster(6, 4, config);
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let dead_id = sim.node_id(nodes[2]).clone();
    sim.crash(nodes[2]);
    assert!(sim.run_until(rounds(40), |sim| sim.all_see(&dead_id, NodeStatus::Dead)).unwrap());
    sim.run_for(grace / 2).unwrap();
    assert!(!sim.none_track(&dead_id), "still tracked before the grace period");
    assert!(sim.run_until(grace, |sim| sim.none_track(&dead_id)).unwrap());
    // Stale gossip does not bring it back.
    sim.run_for(rounds(30)).unwrap();
    assert!(sim.none_track(&dead_id));
}

#[test]
fn a_lagging_node_is_reset_after_tombstone_gc() {
    let config = Config {
        deletion_grace_period: Duration::from_millis(1_000),
        dead_node_grace_period: Duration::from_secs(60),
        ..Config::local_test()
    };
    let (mut sim, nodes) = cluster(7, 3, config);
    let (a, lagging) = (nodes[0], nodes[2]);
    sim.with_node(a, |node, now| node.set(now, "doomed", "1")).unwrap();
    sim.with_node(a, |node, now| node.set(now, "kept", "1")).unwrap();
    assert!(sim.run_until(rounds(20), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    sim.partition(&[&nodes[..2], &nodes[2..]]);
    let now = sim.now();
    sim.node_mut(a).delete(now, "doomed").unwrap();
    sim.with_node(a, |node, now| node.set(now, "kept", "2")).unwrap();
    sim.run_for(Duration::from_secs(3)).unwrap();
    let a_id = sim.node_id(a).clone();
    assert_eq!(sim.node(a).self_node_state().get_versioned("doomed"), None, "tombstone collected");
    assert_eq!(sim.node(lagging).node_state(&a_id).unwrap().get("doomed"), Some("1"));
    sim.take_events(lagging);
    sim.heal();
    assert!(sim.run_until(rounds(40), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    let state = sim.node(lagging).node_state(&a_id).unwrap();
    assert_eq!(state.get("doomed"), None);
    assert_eq!(state.get("kept"), Some("2"));
    let events = sim.take_events(lagging);
    assert!(events.contains(&Event::NodeReset(a_id.clone())));
    assert!(events.contains(&Event::KeyDeleted { node: a_id, key: "doomed".into() }));
    assert!(sim.node(lagging).metrics().resets_applied >= 1);
}

#[test]
fn a_key_with_a_ttl_expires_everywhere() {
    let config = Config { deletion_grace_period: Duration::from_secs(2), ..Config::local_test() };
    let (mut sim, nodes) = cluster(8, 3, config);
    let now = sim.now();
    sim.node_mut(nodes[0]).set_with_ttl(now, "lease", "holder").unwrap();
    let owner = sim.node_id(nodes[0]).clone();
    assert!(sim.run_until(rounds(20), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    assert_eq!(sim.node(nodes[1]).node_state(&owner).unwrap().get("lease"), Some("holder"));
    sim.run_for(Duration::from_secs(3)).unwrap();
    for node in &nodes {
        let events = sim.take_events(*node);
        assert!(events.contains(&Event::KeyExpired { node: owner.clone(), key: "lease".into() }), "{node:?}");
        assert_eq!(sim.node(*node).node_state(&owner).unwrap().get("lease"), None);
    }
}

#[test]
fn a_node_that_leaves_is_seen_left_within_a_couple_of_rounds() {
    let (mut sim, nodes) = cluster(9, 5, Config::local_test());
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let leaver = nodes[1];
    let leaver_id = sim.node_id(leaver).clone();
    let now = sim.now();
    sim.node_mut(leaver).leave(now);
    assert!(sim.run_until(rounds(2), |sim| sim.all_see(&leaver_id, NodeStatus::Left)).unwrap());
    assert!(sim.node(leaver).has_left());
    assert!(sim.take_events(leaver).contains(&Event::NodeLeft(leaver_id.clone())));
    assert!(sim.take_events(nodes[0]).contains(&Event::NodeLeft(leaver_id.clone())));
    // It is never seen dead, and is forgotten after the grace period.
    sim.run_for(Config::local_test().dead_node_grace_period * 2).unwrap();
    assert!(sim.none_track(&leaver_id));
    assert!(!sim.take_events(nodes[0]).contains(&Event::NodeDead(leaver_id)));
}

#[test]
fn the_ready_predicate_decides_which_live_nodes_are_ready() {
    let (mut sim, nodes) = cluster(10, 3, Config::local_test());
    for node in &nodes {
        sim.node_mut(*node).set_ready_predicate(|state| state.get("ready") == Some("yes"));
    }
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    assert_eq!(sim.node(nodes[0]).ready_nodes().count(), 0);
    sim.with_node(nodes[2], |node, now| node.set(now, "ready", "yes")).unwrap();
    let ready_id = sim.node_id(nodes[2]).clone();
    assert!(
        sim.run_until(rounds(10), |sim| {
            sim.node_indices().all(|node| {
                sim.node(node).ready_nodes().cloned().collect::<Vec<_>>() == vec![ready_id.clone()]
            })
        })
        .unwrap()
    );
    assert!(sim.take_events(nodes[0]).contains(&Event::ReadyChanged { node: ready_id, ready: true }));
}

#[test]
fn two_hundred_nodes_converge_with_1400_byte_datagrams() {
    let config = Config { max_datagram_size: 1_400, ..Config::local_test() };
    let config = Config { max_key_len: 64, max_value_len: 256, max_node_name_len: 64, ..config };
    let (mut sim, nodes) = cluster(11, 200, config);
    sim.set_record_events(false);
    for (i, node) in nodes.iter().enumerate() {
        sim.with_node(*node, |node, now| node.set(now, "index", &i.to_string())).unwrap();
        sim.with_node(*node, |node, now| node.set(now, "role", "searcher")).unwrap();
    }
    assert!(sim.run_until(rounds(200), |sim| sim.all_see_all_live() && sim.converged()).unwrap());
    assert!(sim.stats().max_datagram <= 1_400, "{}", sim.stats().max_datagram);
    assert!(sim.node(nodes[5]).metrics().partial_digests_sent > 0, "200 nodes do not fit one digest");
    assert_eq!(sim.stats().rejected, 0);
}

#[test]
fn lossy_network_still_converges() {
    let (mut sim, nodes) = cluster(12, 10, Config::local_test());
    sim.set_network(NetworkConfig {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(20),
        loss: 0.2,
        duplicate: 0.1,
        ..NetworkConfig::default()
    });
    for node in &nodes {
        sim.with_node(*node, |node, now| node.set(now, "k", "v")).unwrap();
    }
    assert!(sim.run_until(rounds(100), |sim| sim.all_see_all_live() && sim.converged()).unwrap());
    assert!(sim.stats().duplicated > 0 && sim.stats().lost > 0);
}

/// A node stalled through a crash elsewhere (a stopped process, a long garbage
/// collection) wakes up to datagrams that waited in its socket, some with news
/// of the crashed node's last heartbeats. That news is older than the pause: it
/// must neither make the crashed node look alive to it nor let it introduce the
/// node again to peers that removed and then forgot it (found by the
/// `protocol_ops` fuzzer; input kept in `fuzz/artifacts-kept/protocol_ops/`).
#[test]
fn a_node_waking_from_a_long_pause_does_not_bring_back_a_node_that_crashed_meanwhile() {
    let config = chitchat_core::testing::campaign::campaign_config();
    let round = config.gossip_interval;
    let mut sim = Simulation::new(11);
    let nodes: Vec<NodeIndex> = (0..4).map(|i| sim.add_node(&format!("n{i}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    assert!(sim.run_until(round * 50, |sim| sim.all_see_all_live()).unwrap());
    let (victim, sleeper) = (nodes[0], nodes[3]);
    let victim_id = sim.node_id(victim).clone();
    // The sleeper stops handling datagrams; the victim beats a few more times
    // (news the sleeper's socket holds), then crashes.
    let pause = config.dead_node_grace_period * 4;
    sim.stall(sleeper, pause);
    sim.run_for(round * 3).unwrap();
    sim.crash(victim);
    // The others detect the crash, remove the victim and forget it (its memory
    // lasts twice the grace period) before the sleeper wakes.
    sim.run_for(pause - round * 3 + round / 2).unwrap();
    for &other in &nodes[1..3] {
        assert!(sim.node(other).node_state(&victim_id).is_none(), "the others removed the crashed node");
    }
    let sleeper_state = sim.node(sleeper).node_state(&victim_id).map(|state| state.heartbeat());
    assert!(sleeper_state.is_some(), "the sleeper still tracks the crashed node when it wakes");
    // The simulator's invariant checker fails the run if a node takes the
    // crashed node back with the heartbeat it removed it with.
    sim.run_for(config.dead_node_grace_period * 3).unwrap();
    for &other in &nodes[1..3] {
        assert!(sim.node(other).node_state(&victim_id).is_none(), "nobody took the crashed node back");
    }
    assert!(sim.node(sleeper).metrics().pauses >= 1, "the sleeper noticed its pause");
    assert!(sim.node(sleeper).node_state(&victim_id).is_none(), "the sleeper removed it too in the end");
    assert!(
        sim.run_until(round * 50, |sim| sim
            .node_indices()
            .filter(|&n| n != victim)
            .all(|n| { sim.node(n).live_nodes().count() == 3 }))
            .unwrap()
    );
}

/// A node that stops for a while (thirty rounds here) does not declare its
/// peers dead on waking for the silence its own pause caused; the peers, which
/// saw it silent, declare it dead and take it back when it beats again.
#[test]
fn a_paused_node_does_not_blame_its_peers_for_its_own_pause() {
    let (mut sim, nodes) = cluster(12, 5, Config::local_test());
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let sleeper = nodes[2];
    let sleeper_id = sim.node_id(sleeper).clone();
    sim.take_events(sleeper);
    // Its socket holds nothing for it to catch up with (the network is cut
    // while it sleeps, as when a laptop is suspended).
    let others: Vec<NodeIndex> = nodes.iter().copied().filter(|&node| node != sleeper).collect();
    sim.partition(&[&[sleeper], &others]);
    sim.stall(sleeper, rounds(30));
    sim.run_for(rounds(30)).unwrap();
    for &other in &others {
        assert_eq!(sim.node(other).node_status(&sleeper_id), Some(NodeStatus::Dead));
    }
    sim.heal();
    assert!(sim.run_until(rounds(20), |sim| sim.all_see_all_live()).unwrap());
    let events = sim.take_events(sleeper);
    assert!(
        !events.iter().any(|event| matches!(event, Event::NodeDead(_))),
        "the sleeper blamed a peer: {events:?}"
    );
    assert_eq!(sim.node(sleeper).metrics().pauses, 1);
}

/// After a pause, a node of a large cluster (whose `Syn`s hash ranges and
/// list nobody) confirms its peers by the hashes they share with it: it
/// declares none of them dead for want of confirmation, although few of them
/// talk to it directly in the rounds it waits.
#[test]
fn a_node_of_a_large_cluster_back_from_a_pause_confirms_its_peers_by_their_hashes() {
    let (mut sim, nodes) = settled_hundred(13);
    let sleeper = nodes[40];
    // Past the pause threshold: a quarter of the 5 s grace periods, 12.5 rounds.
    sim.stall(sleeper, rounds(15));
    sim.run_for(rounds(60)).unwrap();
    assert_eq!(sim.node(sleeper).metrics().pauses, 1);
    assert_eq!(sim.live_names(sleeper).len(), 100, "the sleeper declared peers dead after its pause");
    assert!(sim.all_see_all_live());
}

/// A node of an overloaded process, whose event loop runs it 250 ms late
/// again and again (2.5 gossip intervals), is late, not paused: it still
/// takes in a newcomer. (Were such gaps pauses, it would doubt everything it
/// handles, and track no new node.)
#[test]
fn a_node_always_late_is_not_paused_and_still_takes_in_newcomers() {
    let (mut sim, nodes) = cluster(14, 10, Config::local_test());
    assert!(sim.run_until(rounds(30), |sim| sim.all_see_all_live()).unwrap());
    let busy = nodes[3];
    let newcomer = sim.add_node("newcomer", Config::local_test());
    sim.set_seeds(newcomer, &[nodes[0]]);
    let newcomer_id = sim.node_id(newcomer).clone();
    for _ in 0..40 {
        sim.stall(busy, Duration::from_millis(250));
        sim.run_for(Duration::from_millis(300)).unwrap();
    }
    assert_eq!(sim.node(busy).metrics().pauses, 0);
    assert_eq!(sim.node(busy).node_status(&newcomer_id), Some(NodeStatus::Live));
    assert!(sim.all_see_all_live());
}

/// A forged identity at a running node's address, injected at another node,
/// dies and is removed like any silent node, and never comes back: the node
/// whose address it claims refuses to track it, so its gossip (from that
/// address) cannot pass for the impostor's own (found by the `protocol_ops`
/// fuzzer; input kept in `fuzz/artifacts-kept/protocol_ops/`).
#[test]
fn a_forged_identity_at_a_running_nodes_address_dies_and_stays_dead() {
    use chitchat_core::testing::datagrams::{ack, full};
    let config = chitchat_core::testing::campaign::campaign_config();
    let round = config.gossip_interval;
    let mut sim = Simulation::new(13);
    let nodes: Vec<NodeIndex> = (0..3).map(|i| sim.add_node(&format!("n{i}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    assert!(sim.run_until(round * 50, |sim| sim.all_see_all_live()).unwrap());
    let victim_addr = sim.node_id(nodes[1]).gossip_addr();
    let impostor = chitchat_core::NodeId::new("impostor", 7, victim_addr);
    let bytes = ack(&config.cluster_id, vec![full(impostor.clone(), 7, &[("k", "v", 1)])]);
    sim.with_node(nodes[0], |chitchat, now| chitchat.handle_datagram(now, victim_addr, &bytes)).unwrap();
    assert!(sim.node(nodes[0]).node_state(&impostor).is_some(), "taken in by the first node");
    // The simulator's checker fails the run if anyone takes it back after
    // removing it with the same heartbeat.
    sim.run_for(config.dead_node_grace_period * 4).unwrap();
    assert!(sim.none_track(&impostor), "the impostor is gone everywhere");
    assert!(sim.all_see_all_live());
}

/// A settled cluster's rounds are quiet (one handshake each); a change makes
/// the nodes that learn it push it at the full fanout, and it still spreads
/// at epidemic speed.
#[test]
fn a_settled_cluster_gossips_quietly_and_news_still_spreads_fast() {
    let (mut sim, nodes) = settled_hundred(11);
    let syns =
        |sim: &Simulation| -> u64 { nodes.iter().map(|node| sim.node(*node).metrics().syns_received).sum() };
    let quiet =
        |sim: &Simulation| -> u64 { nodes.iter().map(|node| sim.node(*node).metrics().quiet_rounds).sum() };
    let (syns_before, quiet_before) = (syns(&sim), quiet(&sim));
    sim.run_for(rounds(20)).unwrap();
    let (syns_settled, quiet_settled) = (syns(&sim) - syns_before, quiet(&sim) - quiet_before);
    let node_rounds = 100 * 20;
    // Rounds are jittered earlier by up to 10 %: a little over 20 a node.
    assert!(quiet_settled >= node_rounds, "quiet rounds: {quiet_settled} of about {node_rounds}");
    assert!(syns_settled < node_rounds * 12 / 10, "about one Syn a node a round, not three: {syns_settled}");

    let writer = nodes[77];
    let owner = sim.node_id(writer).clone();
    sim.with_node(writer, |node, now| node.set(now, "news", "fresh")).unwrap();
    let (syns_before, quiet_before) = (syns(&sim), quiet(&sim));
    sim.run_for(rounds(6)).unwrap();
    assert!(sim.all_have_key(&owner, "news", "fresh"), "a change reaches 100 nodes within 6 rounds");
    // About 600 node rounds: quiet ones would open about 600 handshakes.
    let (syns_news, quiet_news) = (syns(&sim) - syns_before, quiet(&sim) - quiet_before);
    assert!(syns_news > 1_200, "nodes that learned it pushed it at the full fanout: {syns_news} Syns");
    assert!(quiet_news < 300, "most rounds had news: {quiet_news} quiet");
}
