//! The hostile catalogue, lasting damage: one forged datagram says something
//! about a node that the node never said (a heartbeat, versions or a GC
//! watermark above its own, a key it never wrote). The node refutes it from its
//! own state, and within 30 rounds every peer holds its true state and sees it
//! live again, while it keeps writing.
//!
//! The forger here is a member: its datagrams come from an address the victim
//! validated (a blind spoofer's sections change nothing but heartbeats, see
//! the last test).

use std::time::Duration;

use chitchat_core::sim::{NodeIndex, Simulation};
use chitchat_core::testing::datagrams::{ack, datagram, empty_digest, known};
use chitchat_core::testing::is_validated;
use chitchat_core::wire::{self, Digest, DigestEntry, MAX_COUNTER, Message, NodeDelta, RingRange};
use chitchat_core::{Config, DatagramError, NodeStatus, Violation};

const NODES: usize = 10;

fn config() -> Config {
    Config { cluster_id: "healing".into(), ..Config::local_test() }
}

/// A converged cluster of [`NODES`] nodes, each with key `k` set.
fn cluster(seed: u64) -> (Simulation, Vec<NodeIndex>) {
    let mut sim = Simulation::new(seed);
    let nodes: Vec<NodeIndex> = (0..NODES).map(|i| sim.add_node(&format!("n{i}"), config())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    for node in &nodes {
        sim.with_node(*node, |node, now| node.set(now, "k", "v0")).unwrap();
    }
    assert!(sim.run_until(Duration::from_secs(20), |sim| sim.converged() && sim.all_see_all_live()).unwrap());
    (sim, nodes)
}

/// Hands `bytes` to `victim` as if from a member other than `not` whose
/// address the victim validated (so that what it says is taken).
fn inject(sim: &mut Simulation, victim: NodeIndex, not: NodeIndex, bytes: &[u8]) {
    let from = sim
        .node_indices()
        .filter(|node| *node != victim && *node != not)
        .map(|node| sim.node_id(node).gossip_addr())
        .find(|addr| is_validated(sim.node(victim), addr))
        .expect("the victim validated a member");
    sim.with_node(victim, |node, now| node.handle_datagram(now, from, bytes)).unwrap();
}

const ROUND: Duration = Duration::from_millis(100);

/// Prints how many rounds the healing took (`--nocapture` shows it).
fn report(sim: &Simulation, start: chitchat_core::Timestamp) {
    let rounds = sim.now().saturating_duration_since(start).as_secs_f64() / ROUND.as_secs_f64();
    eprintln!("healed in {rounds:.1} rounds");
}

/// One Syn reports every node's heartbeat far ahead of the truth. The victim
/// takes it (a heartbeat only grows) and passes it on; each node sees the
/// claim about itself and jumps past it, and nobody stays dead.
#[test]
fn forged_heartbeats_for_every_node_heal_within_30_rounds() {
    let (mut sim, nodes) = cluster(1);
    let victim = nodes[3];
    let forged = 1 << 50;
    let mut entries: Vec<DigestEntry> = sim
        .node(victim)
        .node_states()
        .map(|state| DigestEntry {
            fingerprint: state.id().fingerprint(),
            heartbeat: forged,
            last_gc_version: state.last_gc_version(),
            max_version: state.max_version(),
        })
        .collect();
    entries.sort_by_key(|entry| entry.fingerprint);
    let syn = datagram("healing", Message::Syn { digest: Digest { entries, ..empty_digest() } });
    inject(&mut sim, victim, victim, &syn);
    let start = sim.now();
    let healed = sim.run_until(ROUND * 30, |sim| {
        sim.all_see_all_live()
            && sim.node_indices().all(|node| sim.node(node).self_node_state().heartbeat() > forged)
    });
    assert!(healed.unwrap(), "every node refuted and is seen live: {}", sim.describe());
    report(&sim, start);
    assert!(sim.node_indices().all(|node| sim.node(node).metrics().refutations >= 1));
    // And heartbeats keep growing: nobody goes dead later.
    sim.run_for(ROUND * 50).unwrap();
    assert!(sim.all_see_all_live());
}

/// An Ack claims a node holds versions far above its own: peers take the
/// claim and ignore every real update below it, unless the node refutes.
#[test]
fn a_forged_max_version_does_not_freeze_a_node() {
    let (mut sim, nodes) = cluster(2);
    let (writer, victim) = (nodes[5], nodes[1]);
    let writer_id = sim.node_id(writer).clone();
    let held = sim.node(victim).node_state(&writer_id).unwrap().max_version();
    let forged = NodeDelta { heartbeat: 1, ..known(&writer_id, held, 1 << 50, &[]) };
    inject(&mut sim, victim, writer, &ack("healing", vec![forged]));
    assert_eq!(sim.node(victim).node_state(&writer_id).unwrap().max_version(), 1 << 50);
    sim.with_node(writer, |node, now| node.set(now, "k", "after")).unwrap();
    let start = sim.now();
    let healed =
        sim.run_until(ROUND * 30, |sim| sim.all_have_key(&writer_id, "k", "after") && sim.converged());
    assert!(healed.unwrap(), "the writer's update reached every node: {}", sim.describe());
    report(&sim, start);
}

/// A forged reset with a GC watermark above the node's own erases its keys at
/// a peer (and spreads): the node re-publishes its state above it.
#[test]
fn a_forged_gc_watermark_does_not_erase_a_node_for_good() {
    let (mut sim, nodes) = cluster(3);
    let (writer, victim) = (nodes[6], nodes[2]);
    let writer_id = sim.node_id(writer).clone();
    let held = sim.node(victim).node_state(&writer_id).unwrap().max_version();
    let forged = NodeDelta {
        reset: true,
        last_gc_version: held + 1_000,
        heartbeat: 1,
        ..known(&writer_id, 0, held + 1_000, &[])
    };
    inject(&mut sim, victim, writer, &ack("healing", vec![forged]));
    assert_eq!(sim.node(victim).node_state(&writer_id).unwrap().get("k"), None, "erased at the victim");
    let start = sim.now();
    let healed = sim.run_until(ROUND * 30, |sim| sim.all_have_key(&writer_id, "k", "v0") && sim.converged());
    assert!(healed.unwrap(), "the writer's keys are back everywhere: {}", sim.describe());
    report(&sim, start);
    // While it keeps writing.
    sim.with_node(writer, |node, now| node.set(now, "k", "later")).unwrap();
    assert!(sim.run_until(ROUND * 30, |sim| sim.all_have_key(&writer_id, "k", "later")).unwrap());
}

/// A key the node never wrote, at a version above its own, is dropped
/// everywhere once the node re-publishes its state.
#[test]
fn a_forged_key_does_not_stay_on_every_node() {
    let (mut sim, nodes) = cluster(4);
    let (owner, victim) = (nodes[2], nodes[9]);
    let owner_id = sim.node_id(owner).clone();
    let held = sim.node(victim).node_state(&owner_id).unwrap().max_version();
    let forged = known(&owner_id, held, held + 1, &[("forged", "evil", held + 1)]);
    inject(&mut sim, victim, owner, &ack("healing", vec![forged]));
    assert_eq!(sim.node(victim).node_state(&owner_id).unwrap().get("forged"), Some("evil"));
    let start = sim.now();
    let healed = sim.run_until(ROUND * 30, |sim| {
        sim.node_indices().all(|node| {
            let state = sim.node(node).node_state(&owner_id);
            state.is_some_and(|state| state.get("forged").is_none() && state.get("k") == Some("v0"))
        })
    });
    assert!(healed.unwrap(), "the forged key is gone everywhere: {}", sim.describe());
    report(&sim, start);
}

#[test]
fn counters_of_2_to_the_62_or_more_are_refused() {
    let (mut sim, nodes) = cluster(5);
    let target = sim.node_id(nodes[1]).clone();
    let mut digest = Digest { range: RingRange::FULL, ..empty_digest() };
    digest.entries.push(DigestEntry {
        fingerprint: target.fingerprint(),
        heartbeat: MAX_COUNTER,
        last_gc_version: 0,
        max_version: 0,
    });
    let syn = datagram("healing", Message::Syn { digest });
    assert_eq!(wire::decode(&syn).unwrap_err(), DatagramError::Invalid(Violation::ImplausibleCounter));
    let from = sim.node_id(nodes[2]).gossip_addr();
    let refused = sim.with_node(nodes[0], |node, now| node.handle_datagram(now, from, &syn));
    assert_eq!(refused, Err(DatagramError::Invalid(Violation::ImplausibleCounter)));
    let section = known(&target, 0, u64::MAX, &[]);
    assert!(wire::decode(&ack("healing", vec![section])).is_err());
    assert_eq!(sim.node(nodes[0]).node_status(&target), Some(NodeStatus::Live));
}

/// A blind spoofer (its datagrams come from an address the victim never
/// validated, and answer nothing the victim sent) cannot change what the
/// victim holds of a node peers vouched for: forged records, watermark,
/// versions, farewell or newer incarnation are dropped (counted in
/// `sections_unproven`), only the heartbeat is taken, and the node refutes
/// that.
#[test]
fn a_blind_spoofer_changes_nothing_peers_vouched_for() {
    let (mut sim, nodes) = cluster(6);
    let (owner, victim) = (nodes[4], nodes[7]);
    let owner_id = sim.node_id(owner).clone();
    let before = sim.node(victim).node_state(&owner_id).unwrap().clone();
    let held = before.max_version();
    let stranger: std::net::SocketAddr = "10.9.9.9:7000".parse().unwrap();
    let forged = vec![NodeDelta {
        reset: true,
        last_gc_version: held + 1_000,
        ..known(&owner_id, 0, held + 1_000, &[("forged", "evil", held + 1_000)])
    }];
    sim.with_node(victim, |node, now| node.handle_datagram(now, stranger, &ack("healing", forged))).unwrap();
    let newer = chitchat_core::NodeId::new(owner_id.name(), owner_id.generation() + 1, stranger);
    let incarnation = chitchat_core::testing::datagrams::full(newer.clone(), 1, &[]);
    sim.with_node(victim, |node, now| {
        node.handle_datagram(now, stranger, &ack("healing", vec![incarnation]))
    })
    .unwrap();
    let after = sim.node(victim).node_state(&owner_id).unwrap();
    assert_eq!((after.max_version(), after.last_gc_version()), (held, before.last_gc_version()));
    assert_eq!(after.get("forged"), None);
    assert_eq!(after.get("k"), Some("v0"));
    assert!(sim.node(victim).node_state(&newer).is_none(), "the newer incarnation was not taken");
    assert_eq!(sim.node(victim).metrics().sections_unproven, 2);
    // A farewell spoofed from elsewhere: ignored too.
    let mut farewell = known(&owner_id, held, held, &[]);
    farewell.left = true;
    sim.with_node(victim, |node, now| node.handle_datagram(now, stranger, &ack("healing", vec![farewell])))
        .unwrap();
    assert_eq!(sim.node(victim).node_status(&owner_id), Some(NodeStatus::Live));
    assert_eq!(sim.node(victim).metrics().sections_unproven, 3);
    let start = sim.now();
    let healed = sim.run_until(ROUND * 30, |sim| sim.all_see_all_live() && sim.converged());
    assert!(healed.unwrap(), "{}", sim.describe());
    report(&sim, start);
}
