//! An arbitrary sequence of operations on a small simulated cluster: datagrams
//! dropped, duplicated, reordered (per link or everywhere), time advanced, keys
//! set, deleted and given a time to live, partitions made and healed, nodes
//! crashed, restarted, stalled and leaving, clocks skewed, and raw or hostile
//! datagrams injected at any node. The simulator checks its invariants after
//! every step; an injected datagram that is refused must change nothing.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};
use chitchat_core::testing::feed;
use chitchat_core::wire;
use chitchat_fuzz::hostile::{ArbPacket, Context, check_round_trip};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Op {
    /// Let virtual time pass (milliseconds).
    Run(u16),
    /// The default network: loss, duplication and jitter (reordering), in
    /// 1/256ths and milliseconds.
    Network {
        loss: u8,
        duplicate: u8,
        jitter: u8,
    },
    /// One link: all its datagrams dropped, duplicated, reordered or too large.
    Link {
        from: u8,
        to: u8,
        fate: LinkFate,
    },
    /// Back to a perfect network.
    ClearLinks,
    Set {
        node: u8,
        key: u8,
        value: u8,
    },
    Delete {
        node: u8,
        key: u8,
    },
    SetWithTtl {
        node: u8,
        key: u8,
        value: u8,
    },
    DeleteAfterTtl {
        node: u8,
        key: u8,
    },
    Partition {
        split: u8,
    },
    Heal,
    Crash(u8),
    Restart(u8),
    Stall {
        node: u8,
        millis: u16,
    },
    Leave(u8),
    ClockOffset {
        node: u8,
        seconds: u16,
    },
    /// Raw bytes at a node, as if from another node.
    Raw {
        to: u8,
        from: u8,
        bytes: Vec<u8>,
    },
    /// A well-formed, hostile message at a node, as if from another node.
    Hostile {
        to: u8,
        from: u8,
        packet: ArbPacket,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum LinkFate {
    Drop,
    Duplicate,
    Reorder,
    SmallMtu,
}

#[derive(Arbitrary, Debug)]
struct Input {
    seed: u64,
    nodes: u8,
    ops: Vec<Op>,
}

const KEYS: [&str; 4] = ["k", "é", "🦀", "key"];

fuzz_target!(|input: Input| {
    let mut sim = Simulation::new(input.seed);
    sim.set_record_events(false);
    let config = chitchat_core::testing::campaign::campaign_config();
    let count = 2 + usize::from(input.nodes % 4);
    let nodes: Vec<NodeIndex> = (0..count).map(|i| sim.add_node(&format!("n{i}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    let pick = |i: u8| nodes[usize::from(i) % count];
    let round = config.gossip_interval;
    let mut ops = 0;
    for op in &input.ops {
        ops += 1;
        if ops > 64 {
            break;
        }
        match op {
            Op::Run(millis) => run(&mut sim, Duration::from_millis(u64::from(*millis % 5_000))),
            Op::Network { loss, duplicate, jitter } => sim.set_network(NetworkConfig {
                loss: f64::from(*loss) / 256.0,
                duplicate: f64::from(*duplicate) / 256.0,
                jitter: Duration::from_millis(u64::from(*jitter)),
                ..NetworkConfig::default()
            }),
            Op::Link { from, to, fate } => {
                let network = match fate {
                    LinkFate::Drop => NetworkConfig { loss: 1.0, ..NetworkConfig::default() },
                    LinkFate::Duplicate => NetworkConfig { duplicate: 1.0, ..NetworkConfig::default() },
                    LinkFate::Reorder => {
                        NetworkConfig { jitter: Duration::from_millis(300), ..NetworkConfig::default() }
                    }
                    LinkFate::SmallMtu => {
                        NetworkConfig { max_datagram_size: Some(600), ..NetworkConfig::default() }
                    }
                };
                sim.set_link(pick(*from), pick(*to), network);
            }
            Op::ClearLinks => sim.clear_links(),
            Op::Set { node, key, value } => change(&mut sim, pick(*node), |chitchat, now| {
                chitchat.set(now, KEYS[usize::from(*key) % 4], &"v".repeat(usize::from(*value % 200)))
            }),
            Op::Delete { node, key } => change(&mut sim, pick(*node), |chitchat, now| {
                chitchat.delete(now, KEYS[usize::from(*key) % 4])
            }),
            Op::SetWithTtl { node, key, value } => change(&mut sim, pick(*node), |chitchat, now| {
                chitchat.set_with_ttl(
                    now,
                    KEYS[usize::from(*key) % 4],
                    &"t".repeat(usize::from(*value % 200)),
                )
            }),
            Op::DeleteAfterTtl { node, key } => change(&mut sim, pick(*node), |chitchat, now| {
                chitchat.delete_after_ttl(now, KEYS[usize::from(*key) % 4])
            }),
            Op::Partition { split } => {
                let split = 1 + usize::from(*split) % (count - 1);
                sim.partition(&[&nodes[..split], &nodes[split..]]);
            }
            Op::Heal => sim.heal(),
            Op::Crash(node) => sim.crash(pick(*node)),
            Op::Restart(node) => sim.restart(pick(*node)),
            Op::Stall { node, millis } => {
                sim.stall(pick(*node), Duration::from_millis(u64::from(*millis % 10_000)))
            }
            Op::Leave(node) => {
                if sim.is_up(pick(*node)) {
                    sim.with_node(pick(*node), |chitchat, now| chitchat.leave(now));
                }
            }
            Op::ClockOffset { node, seconds } => {
                sim.set_clock_offset(pick(*node), Duration::from_secs(u64::from(*seconds)))
            }
            Op::Raw { to, from, bytes } => inject(&mut sim, pick(*to), pick(*from), bytes),
            Op::Hostile { to, from, packet } => {
                let cx = Context {
                    cluster_id: config.cluster_id.clone(),
                    self_id: sim.node_id(pick(*to)).clone(),
                    known: nodes.iter().map(|node| sim.node_id(*node).clone()).collect(),
                    tokens: Vec::new(),
                };
                let packet = packet.get(&cx);
                let bytes = wire::encode(&packet);
                check_round_trip(&packet, &bytes);
                inject(&mut sim, pick(*to), pick(*from), &bytes);
            }
        }
        run(&mut sim, Duration::from_millis(1));
    }
    run(&mut sim, round * 10);
});

fn run(sim: &mut Simulation, duration: Duration) {
    if let Err(violation) = sim.run_for(duration) {
        panic!("{violation}");
    }
}

/// A key change at a running node; refusals (the node left) are fine.
fn change<E: std::fmt::Debug>(
    sim: &mut Simulation,
    node: NodeIndex,
    f: impl FnOnce(&mut chitchat_core::Chitchat, chitchat_core::Timestamp) -> Result<(), E>,
) {
    if sim.is_up(node) {
        let _ = sim.with_node(node, f);
    }
}

/// Delivers `bytes` to `to` as if from `from`'s address, now, checking that a
/// refusal changes nothing; the simulator checks its invariants at the next step.
fn inject(sim: &mut Simulation, to: NodeIndex, from: NodeIndex, bytes: &[u8]) {
    if !sim.is_up(to) {
        return;
    }
    let from_addr = sim.node_id(from).gossip_addr();
    if let Ok(packet) = wire::decode(bytes) {
        sim.note_injected(&packet);
    }
    sim.with_node(to, |chitchat, now| {
        let _ = feed(chitchat, now, from_addr, bytes);
    });
    // Makes the node due now, so that the next step checks its invariants.
    sim.node_mut(to);
}
