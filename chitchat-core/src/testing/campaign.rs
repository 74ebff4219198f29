//! Fault campaigns: a small cluster under a random mix of faults, then a calm
//! period after which every running node must hold the same state.
//!
//! One seed decides everything: cluster size, network (loss, bursts, jitter,
//! duplication, a link with a small MTU), clock offsets, and a schedule of
//! crashes, restarts, stalls, partitions and key changes. The simulator's
//! invariants are checked after every step; at the end the cluster must
//! converge. `cargo test` runs a few hundred seeds; the long campaign runs
//! thousands:
//!
//! ```text
//! cargo run --release -p chitchat-core --features sim --example campaign -- --seeds 10000
//! ```

use std::time::Duration;

use crate::config::Config;
use crate::sim::{GilbertElliott, NetworkConfig, NodeIndex, Simulation};

/// What one seed of the campaign did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CampaignOutcome {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Faults injected.
    pub faults: usize,
    /// Rounds of calm it took to converge after the faults.
    pub rounds_to_converge: u64,
}

/// The configuration of campaign nodes: 100 ms rounds, short grace periods so
/// that garbage collection, removal and resets all happen during a run, and
/// 1,400-byte datagrams so that digests and deltas are cut.
pub fn campaign_config() -> Config {
    Config {
        max_datagram_size: 1_400,
        max_key_len: 32,
        max_value_len: 200,
        max_node_name_len: 32,
        max_cluster_id_len: 32,
        dead_node_grace_period: Duration::from_secs(3),
        deletion_grace_period: Duration::from_secs(2),
        ..Config::local_test()
    }
}

/// Runs the campaign for one seed. `Err` carries a description and the command
/// that replays the seed.
pub fn run_seed(seed: u64) -> Result<CampaignOutcome, String> {
    let replay = format!(
        "replay: cargo run --release -p chitchat-core --features sim --example campaign -- --seeds 1 --start {seed}"
    );
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_cafe);
    let mut sim = Simulation::new(seed);
    sim.set_record_events(false);
    let config = campaign_config();
    let round = config.gossip_interval;
    let count = rng.usize(3..=7);
    let nodes: Vec<NodeIndex> = (0..count).map(|i| sim.add_node(&format!("n{i}"), config.clone())).collect();
    sim.set_seeds_all(&[nodes[0], nodes[count - 1]]);
    for node in &nodes {
        if rng.bool() {
            sim.set_clock_offset(*node, Duration::from_millis(rng.u64(0..10_000_000)));
        }
    }
    sim.set_network(NetworkConfig {
        latency: Duration::from_millis(rng.u64(1..20)),
        jitter: Duration::from_millis(rng.u64(0..80)),
        loss: rng.f64() * 0.3,
        burst: rng.bool().then(|| GilbertElliott {
            good_to_bad: rng.f64() * 0.1,
            bad_to_good: 0.2 + rng.f64() * 0.5,
            loss_in_bad: 1.0,
        }),
        duplicate: rng.f64() * 0.2,
        stream_bandwidth: NetworkConfig::default().stream_bandwidth,
        max_datagram_size: None,
    });
    if rng.bool() {
        let (from, to) = (nodes[rng.usize(..count)], nodes[rng.usize(..count)]);
        sim.set_link(from, to, NetworkConfig { max_datagram_size: Some(600), ..NetworkConfig::default() });
    }

    let fault_rounds = rng.u64(20..80);
    let mut faults = 0;
    let mut partitioned = false;
    let fail = |error: crate::sim::InvariantViolation| format!("{error}\n{replay}");
    for _ in 0..fault_rounds {
        let node = nodes[rng.usize(..count)];
        match rng.u32(0..100) {
            0..=29 => {
                let key = format!("k{}", rng.u8(0..8));
                let value = "v".repeat(rng.usize(0..150));
                let choice = rng.u8(0..4);
                if sim.is_up(node) && !sim.node(node).has_left() {
                    sim.with_node(node, |chitchat, now| match choice {
                        0 | 1 => chitchat.set(now, &key, &value),
                        2 => chitchat.delete(now, &key),
                        _ => chitchat.set_with_ttl(now, &key, &value),
                    })
                    .map_err(|error| format!("seed {seed}: refused key change: {error}\n{replay}"))?;
                }
            }
            30..=33 => {
                faults += 1;
                if sim.is_up(node) { sim.crash(node) } else { sim.restart(node) }
            }
            34..=37 => {
                faults += 1;
                sim.stall(node, round * rng.u32(1..30));
            }
            38..=41 => {
                faults += 1;
                if partitioned {
                    sim.heal();
                } else {
                    let split = rng.usize(1..count);
                    sim.partition(&[&nodes[..split], &nodes[split..]]);
                }
                partitioned = !partitioned;
            }
            _ => {}
        }
        sim.run_for(round).map_err(fail)?;
    }

    // Calm: a perfect network, every node running, and time to converge.
    sim.heal();
    sim.clear_links();
    sim.set_network(NetworkConfig::default());
    for node in &nodes {
        if !sim.is_up(*node) {
            sim.restart(*node);
        }
    }
    let calm_limit = 300;
    for calm_round in 1..=calm_limit {
        sim.run_for(round).map_err(fail)?;
        if sim.converged() && sim.all_see_all_live() {
            return Ok(CampaignOutcome { nodes: count, faults, rounds_to_converge: calm_round });
        }
    }
    Err(format!(
        "seed {seed}: no convergence within {calm_limit} calm rounds after the faults\n{replay}\n{}",
        sim.describe()
    ))
}
