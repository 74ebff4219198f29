//! The catch-up streams, end to end in the simulator: a node far behind pulls
//! the rest on a stream, in a round or two, whatever the datagram size.

use std::time::Duration;

use chitchat_core::Config;
use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};

fn config() -> Config {
    Config { max_datagram_size: 1_400, max_key_len: 16, max_value_len: 2_000, ..Config::local_test() }
}

fn set_keys(sim: &mut Simulation, node: NodeIndex, keys: usize, len: usize) {
    sim.with_node(node, |chitchat, now| {
        for k in 0..keys {
            chitchat.set(now, &format!("key-{k:05}"), &"v".repeat(len)).unwrap();
        }
    });
}

fn holds_all(sim: &Simulation, observer: NodeIndex, owner: NodeIndex) -> bool {
    let id = sim.node_id(owner);
    let max = sim.node(owner).self_node_state().max_version();
    sim.node(observer).node_state(id).is_some_and(|state| state.max_version() == max)
}

#[test]
fn a_newcomer_pulls_a_large_state_on_a_stream() {
    let mut sim = Simulation::new(3);
    let a = sim.add_node("a", config());
    let b = sim.add_node("b", config());
    set_keys(&mut sim, a, 1_000, 1_000);
    sim.set_seeds(b, &[a]);
    let caught_up = sim.run_until(Duration::from_secs(3), |sim| holds_all(sim, b, a)).unwrap();
    assert!(caught_up, "1 MB of 1,000-byte values, 1,400-byte datagrams: within 3 rounds");
    sim.run_for(Duration::from_secs(1)).unwrap();
    for node in [a, b] {
        let streams = &sim.node(node).metrics().streams;
        assert!(streams.completed >= 1, "{streams:?}");
        assert_eq!((streams.failed, streams.frames_rejected), (0, 0), "{streams:?}");
    }
}

/// Frames are fair: the first one carries the first records of every node,
/// so a puller holds a key of every node long before the whole state.
#[test]
fn the_first_frame_starts_every_node() {
    let mut sim = Simulation::new(5);
    // 1 MB/s streams: each 1 MiB frame takes a second.
    sim.set_network(NetworkConfig { stream_bandwidth: 1_000_000, ..NetworkConfig::default() });
    let holders: Vec<NodeIndex> = (0..4).map(|i| sim.add_node(&format!("h{i}"), config())).collect();
    sim.set_seeds_all(&[holders[0]]);
    assert!(sim.run_until(Duration::from_secs(5), |sim| sim.all_see_all_live()).unwrap());
    for holder in &holders {
        set_keys(&mut sim, *holder, 400, 1_000);
    }
    assert!(
        sim.run_until(Duration::from_secs(30), |sim| holders
            .iter()
            .all(|a| holders.iter().all(|b| holds_all(sim, *a, *b))))
            .unwrap()
    );
    let joiner = sim.add_node("joiner", config());
    sim.set_seeds(joiner, &[holders[0]]);
    let has_first_keys = |sim: &Simulation| {
        holders.iter().all(|holder| {
            let id = sim.node_id(*holder);
            sim.node(joiner).node_state(id).is_some_and(|state| state.get("key-00000").is_some())
        })
    };
    assert!(sim.run_until(Duration::from_secs(5), has_first_keys).unwrap());
    assert!(
        !holders.iter().all(|holder| holds_all(&sim, joiner, *holder)),
        "1.6 MB takes two frames: the first keys came with the first"
    );
    assert!(
        sim.run_until(Duration::from_secs(10), |sim| holders.iter().all(|h| holds_all(sim, joiner, *h)))
            .unwrap()
    );
}
