//! The hostile catalogue, reflection and amplification: what one datagram from
//! a forged source address can make a node send there. An address that has not
//! answered a `Syn` of the node gets at most three times what it sent; an
//! unsolicited `SynAck` gets an `Ack` no larger than itself; all of it draws on
//! a budget of bytes per second. A newcomer still joins.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat_core::sim::Simulation;
use chitchat_core::testing::datagrams::{ack, answering, datagram, empty_digest, full, syn};
use chitchat_core::testing::{DatagramSealer, track_nodes, validate_peer};
use chitchat_core::wire::{Delta, Digest, Message, RingRange};
use chitchat_core::{Chitchat, Config, EncryptionMode, Fingerprint, Keyring, NodeId, SecretKey, Timestamp};

const CLUSTER: &str = "amplification";
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { cluster_id: CLUSTER.into(), ..Config::default() }
}

/// A node tracking `count` live nodes of `keys` keys each (their addresses
/// never answered it), with every output drained.
fn node_knowing(count: u16, keys: usize, config: Config) -> Chitchat {
    let mut node = Chitchat::new(config, NodeId::new("victim", 1, addr(7000)), [("own", "key")], T0).unwrap();
    track_nodes(&mut node, T0, count, keys);
    drain(&mut node);
    node
}

fn drain(node: &mut Chitchat) -> Vec<(SocketAddr, usize)> {
    while node.poll_event().is_some() {}
    std::iter::from_fn(|| node.poll_transmit()).map(|transmit| (transmit.to, transmit.bytes.len())).collect()
}

/// Bytes sent to `to` among `sent`.
fn sent_to(sent: &[(SocketAddr, usize)], to: SocketAddr) -> usize {
    sent.iter().filter(|(addr, _)| *addr == to).map(|(_, len)| len).sum()
}

#[test]
fn a_syn_from_an_unvalidated_address_gets_at_most_three_times_its_size() {
    let mut node = node_knowing(1_000, 20, config());
    let spoofed = addr(40_000);
    let bytes = syn(CLUSTER, empty_digest());
    node.handle_datagram(T0, spoofed, &bytes).unwrap();
    while node.poll_event().is_some() {}
    let reply = node.poll_transmit().expect("a newcomer's Syn is answered");
    let sent = [(reply.to, reply.bytes.len())];
    let answered = sent_to(&sent, spoofed);
    // Its digest covers only part of the ring (it never says "the whole ring,
    // and I know nobody there", even when not one entry fits).
    let Message::SynAck { digest, .. } = chitchat_core::wire::decode(&reply.bytes).unwrap().message else {
        panic!("a SynAck")
    };
    assert!(!digest.range.is_full(), "{digest:?}");
    assert!(answered <= 3 * bytes.len(), "{answered} bytes answered to a {}-byte Syn", bytes.len());
    assert_eq!(node.metrics().unvalidated_answers, 1);
    assert_eq!(node.metrics().unvalidated_bytes_sent, answered as u64);
    // The short answer asks the newcomer who it is.
    let newcomer = NodeId::new("newcomer", 1, spoofed);
    // Its digest covers the ring but its own fingerprint, which it sends apart.
    let fingerprint = newcomer.fingerprint();
    let mut digest = empty_digest();
    digest.range =
        RingRange { start: Fingerprint::from_u64(fingerprint.as_u64().wrapping_add(1)), end: fingerprint };
    digest.sender = Some(chitchat_core::wire::DigestEntry {
        fingerprint: newcomer.fingerprint(),
        heartbeat: 1,
        last_gc_version: 0,
        max_version: 0,
    });
    let bytes = syn(CLUSTER, digest);
    node.handle_datagram(T0, spoofed, &bytes).unwrap();
    let (to, len) = drain(&mut node)[0];
    assert_eq!(to, spoofed);
    assert!(len <= 3 * bytes.len());
}

#[test]
fn a_validated_peer_gets_a_full_answer() {
    let mut node = node_knowing(1_000, 20, config());
    let peer = NodeId::new("peer", 1, addr(40_001));
    validate_peer(&mut node, T0, &peer);
    let bytes = syn(CLUSTER, empty_digest());
    node.handle_datagram(T0, peer.gossip_addr(), &bytes).unwrap();
    let answered = sent_to(&drain(&mut node), peer.gossip_addr());
    assert!(answered > 60_000, "a full datagram: {answered} bytes");
    assert_eq!(node.metrics().unvalidated_answers, 0);
}

#[test]
fn an_unsolicited_syn_ack_gets_an_ack_no_larger_than_itself() {
    let mut node = node_knowing(1_000, 20, config());
    let spoofed = addr(40_002);
    let syn_ack = datagram(CLUSTER, Message::SynAck { digest: empty_digest(), delta: Delta::default() });
    node.handle_datagram(T0, spoofed, &syn_ack).unwrap();
    let answered = sent_to(&drain(&mut node), spoofed);
    assert!(answered <= syn_ack.len(), "{answered} bytes answered to a {}-byte SynAck", syn_ack.len());
    assert_eq!(node.metrics().unsolicited_syn_acks, 1);
    // Even from the address of a tracked node that this node did not talk to.
    let member = addr(10_007);
    node.handle_datagram(T0, member, &syn_ack).unwrap();
    assert!(sent_to(&drain(&mut node), member) <= syn_ack.len());
}

#[test]
fn a_syn_ack_answering_a_syn_of_the_node_gets_a_full_ack_and_validates_the_address() {
    let mut node = node_knowing(1_000, 20, config());
    let member = NodeId::new("node-0007", 1, addr(10_007));
    node.gossip_with(T0, member.gossip_addr());
    let our_syn = node.poll_transmit().expect("a Syn");
    drain(&mut node);
    let message = Message::SynAck { digest: empty_digest(), delta: Delta::default() };
    // A SynAck that does not echo the Syn's token answers nothing (it was
    // spoofed by someone who never saw the Syn).
    let blind = datagram(CLUSTER, message.clone());
    node.handle_datagram(T0, member.gossip_addr(), &blind).unwrap();
    assert!(sent_to(&drain(&mut node), member.gossip_addr()) <= blind.len());
    assert_eq!(node.metrics().unsolicited_syn_acks, 1);
    let syn_ack = answering(CLUSTER, &our_syn.bytes, message);
    node.handle_datagram(T0, member.gossip_addr(), &syn_ack).unwrap();
    assert!(sent_to(&drain(&mut node), member.gossip_addr()) > 60_000, "a full Ack");
    // A second SynAck does not answer that Syn again.
    node.handle_datagram(T0, member.gossip_addr(), &syn_ack).unwrap();
    assert!(sent_to(&drain(&mut node), member.gossip_addr()) <= syn_ack.len());
    assert_eq!(node.metrics().unsolicited_syn_acks, 2);
    // And its Syns now get full answers.
    node.handle_datagram(T0, member.gossip_addr(), &syn(CLUSTER, empty_digest())).unwrap();
    assert!(sent_to(&drain(&mut node), member.gossip_addr()) > 60_000);
}

#[test]
fn a_flood_of_spoofed_sources_draws_on_one_budget_per_second() {
    let config = Config { max_unvalidated_bytes_per_sec: 100_000, ..config() };
    let mut node = node_knowing(200, 5, config);
    let bytes = syn(CLUSTER, empty_digest());
    let mut sent = 0;
    for source in 0..1_000 {
        node.handle_datagram(T0, addr(20_000 + source), &bytes).unwrap();
        sent += drain(&mut node).iter().map(|(_, len)| len).sum::<usize>();
    }
    assert!(sent <= 100_000, "{sent} bytes to 1,000 spoofed sources in one instant");
    assert!(node.metrics().unvalidated_answers_dropped > 0);
    // A second later, the budget is back.
    node.handle_datagram(T0 + Duration::from_secs(1), addr(30_000), &bytes).unwrap();
    assert!(!drain(&mut node).is_empty());
}

#[test]
fn a_syn_of_another_cluster_gets_a_bad_cluster_within_the_limit() {
    let mut node = node_knowing(10, 1, config());
    let bytes = syn("another-cluster", empty_digest());
    node.handle_datagram(T0, addr(40_003), &bytes).unwrap();
    let sent = drain(&mut node);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].1 <= 3 * bytes.len());
}

#[test]
fn sealed_captures_replayed_to_another_node_from_a_spoofed_source_stay_within_the_limit() {
    let key = SecretKey::from_bytes([9; 32]);
    let mut victim = node_knowing(1_000, 20, config());
    victim.set_encryption(EncryptionMode::Required, Keyring::new(key.clone()), [1; 16]).unwrap();
    // A Syn sealed by a member for someone else, captured and replayed.
    let mut sealer = DatagramSealer::new(Keyring::new(key), [2; 16]);
    let digest = Digest::default();
    let captured = sealer.seal(syn(CLUSTER, digest), CLUSTER).unwrap();
    let spoofed = addr(40_004);
    victim.handle_datagram(T0, spoofed, &captured).unwrap();
    let answered = sent_to(&drain(&mut victim), spoofed);
    assert!(answered <= 3 * captured.len(), "{answered} bytes to a {}-byte capture", captured.len());
}

#[test]
fn a_newcomer_still_joins_a_converged_cluster_within_a_few_rounds() {
    let mut sim = Simulation::new(7);
    let config = Config::local_test();
    let nodes: Vec<_> = (0..20).map(|i| sim.add_node(&format!("n{i:02}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    assert!(sim.run_until(Duration::from_secs(10), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    let newcomer = sim.add_node("newcomer", config.clone());
    sim.set_seeds_all(&[nodes[0]]);
    let joined_at = sim.now();
    let interval = config.gossip_interval;
    assert!(
        sim.run_until(interval * 10, |sim| sim.converged() && sim.all_see_all_live()).unwrap(),
        "the newcomer joined within 10 rounds"
    );
    let rounds = sim.now().saturating_duration_since(joined_at).as_secs_f64() / interval.as_secs_f64();
    assert!(sim.node(newcomer).live_nodes().count() == 21, "after {rounds:.1} rounds");
}

/// A newcomer's first Syn gets a short answer; its Ack, which answers that
/// SynAck (and introduces it), validates its address, so that its next Syn
/// gets a full answer: one extra round trip at most.
#[test]
fn a_newcomer_that_answers_the_short_syn_ack_gets_full_answers_next() {
    let mut node = node_knowing(1_000, 20, config());
    let newcomer = NodeId::new("newcomer", 1, addr(40_010));
    let syn_bytes = syn(CLUSTER, empty_digest());
    node.handle_datagram(T0, newcomer.gossip_addr(), &syn_bytes).unwrap();
    while node.poll_event().is_some() {}
    let short = node.poll_transmit().expect("a short SynAck");
    assert!(short.bytes.len() <= 3 * syn_bytes.len());
    let introduction = answering(
        CLUSTER,
        &short.bytes,
        Message::Ack { delta: Delta { nodes: vec![full(newcomer.clone(), 1, &[])], more: false } },
    );
    node.handle_datagram(T0, newcomer.gossip_addr(), &introduction).unwrap();
    drain(&mut node);
    node.handle_datagram(T0, newcomer.gossip_addr(), &syn_bytes).unwrap();
    assert!(sent_to(&drain(&mut node), newcomer.gossip_addr()) > 60_000, "a full answer");
    // An Ack from an address this node sent no SynAck validates nothing.
    let stranger = NodeId::new("stranger", 1, addr(40_011));
    let introduction = ack(CLUSTER, vec![full(stranger.clone(), 1, &[])]);
    node.handle_datagram(T0, stranger.gossip_addr(), &introduction).unwrap();
    node.handle_datagram(T0, stranger.gossip_addr(), &syn_bytes).unwrap();
    assert!(sent_to(&drain(&mut node), stranger.gossip_addr()) <= 3 * syn_bytes.len());
}

/// A blind spoofer cannot validate a victim's address: it sends a `Syn` from
/// the victim (the short `SynAck` goes to the victim, unseen), then an `Ack`
/// from the victim introducing a node there. Without the `SynAck`'s token the
/// `Ack` answers nothing, so the victim's address stays unvalidated and every
/// later `Syn` from it gets at most three times its size. (Before tokens, 312
/// spoofed bytes made a node of 1,000 tracked nodes send 655,017 bytes to the
/// victim.)
#[test]
fn a_blind_spoofer_cannot_validate_a_victims_address() {
    let mut node = node_knowing(1_000, 20, config());
    let victim = addr(40_020);
    let syn_bytes = syn(CLUSTER, empty_digest());
    let mut spoofed = 0;
    let mut reflected = 0;
    for round in 0..10u64 {
        let now = T0 + Duration::from_millis(100 * round);
        node.handle_datagram(now, victim, &syn_bytes).unwrap();
        spoofed += syn_bytes.len();
        reflected += sent_to(&drain(&mut node), victim);
        let forged = ack(CLUSTER, vec![full(NodeId::new("victim-node", 1, victim), 1, &[])]);
        node.handle_datagram(now, victim, &forged).unwrap();
        spoofed += forged.len();
        reflected += sent_to(&drain(&mut node), victim);
        // Even a guess of the token does not help.
        let guess = chitchat_core::wire::encode(&chitchat_core::wire::Packet {
            echo: Some(chitchat_core::wire::Token(round.to_le_bytes())),
            ..chitchat_core::wire::Packet::new(CLUSTER, Message::Ack { delta: Delta::default() })
        });
        node.handle_datagram(now, victim, &guess).unwrap();
        spoofed += guess.len();
        reflected += sent_to(&drain(&mut node), victim);
    }
    assert!(reflected <= 3 * spoofed, "{reflected} bytes reflected for {spoofed} spoofed");
}

/// A flood of made-up identities at one node, each introduced first-hand from
/// its own spoofed address, stays at that node: it tracks them but relays only
/// nodes vouched for by a peer that proved its address, so the cluster's
/// traffic does not grow with the flood (it grew ×78 before). A newcomer
/// still gets in, in place of a made-up identity, once its `Ack` answers the
/// flooded node's `SynAck`.
#[test]
fn a_flood_of_made_up_identities_does_not_multiply_cluster_traffic() {
    let config = Config { max_nodes: 500, ..Config::local_test() };
    let run = |flood: bool| {
        let mut sim = Simulation::new(3);
        let nodes: Vec<_> = (0..10).map(|i| sim.add_node(&format!("n{i}"), config.clone())).collect();
        sim.set_seeds_all(&[nodes[0]]);
        sim.run_for(Duration::from_secs(5)).unwrap();
        assert!(sim.converged() && sim.all_see_all_live());
        let before = sim.stats().bytes_sent;
        let mut fake = 0u32;
        for _ in 0..300 {
            if flood {
                for _ in 0..20 {
                    fake += 1;
                    let [_, a, b, c] = fake.to_be_bytes();
                    let id = NodeId::new(format!("fake-{fake}"), 1, SocketAddr::from(([10, a, b, c], 7000)));
                    let from = id.gossip_addr();
                    let bytes = ack(&config.cluster_id, vec![full(id, 1, &[])]);
                    sim.note_injected(&chitchat_core::wire::decode(&bytes).unwrap());
                    sim.with_node(nodes[1], |node, now| node.handle_datagram(now, from, &bytes).unwrap());
                }
            }
            sim.run_for(Duration::from_millis(10)).unwrap();
        }
        let traffic = sim.stats().bytes_sent - before;
        let tracked = chitchat_core::testing::tracked_nodes(sim.node(nodes[1]));
        // None of the made-up identities reaches the application.
        let visible = sim.node(nodes[1]).node_states().count();
        assert!(visible <= 10, "{visible} nodes visible");
        // A newcomer joins through the flooded node.
        let newcomer = sim.add_node("newcomer", config.clone());
        sim.set_seeds_all(&[nodes[1]]);
        sim.run_for(Duration::from_secs(3)).unwrap();
        let joined = sim.node(nodes[1]).live_nodes().any(|id| id.name() == "newcomer")
            && sim.node(newcomer).live_nodes().count() >= 11;
        (traffic, tracked, joined)
    };
    let (calm, _, _) = run(false);
    let (flooded, tracked, joined) = run(true);
    assert_eq!(tracked, 500, "the flooded node's table filled up");
    assert!(joined, "the newcomer got in");
    assert!(flooded * 10 <= calm * 12, "{flooded} bytes under the flood against {calm} without");
}
