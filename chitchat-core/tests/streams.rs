//! The catch-up streams, end to end in the simulator: a node far behind pulls
//! the rest on a stream, in a round or two, whatever the datagram size.

use std::time::Duration;

use chitchat_core::sim::{NetworkConfig, NodeIndex, Simulation};
use chitchat_core::testing::datagrams;
use chitchat_core::wire::{self, Message, Packet};
use chitchat_core::{Config, DatagramError, EncryptionMode, Keyring, SecretKey, StreamError};

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

/// A record larger than a frame's usual room (64 KiB, then 128 KiB) gets
/// the frame limit's: values of 300 KB and 900 KB travel, between smaller
/// records, in the frames of one pull.
#[test]
fn records_larger_than_a_frames_usual_room_still_travel() {
    let config = Config { max_value_len: 900_000, ..config() };
    let mut sim = Simulation::new(5);
    let a = sim.add_node("a", config.clone());
    let b = sim.add_node("b", config);
    sim.with_node(a, |chitchat, now| {
        chitchat.set(now, "small-1", "x").unwrap();
        chitchat.set(now, "large-1", &"l".repeat(300_000)).unwrap();
        chitchat.set(now, "small-2", &"y".repeat(1_000)).unwrap();
        chitchat.set(now, "large-2", &"m".repeat(900_000)).unwrap();
        chitchat.set(now, "small-3", "z").unwrap();
    });
    sim.set_seeds(b, &[a]);
    let caught_up = sim.run_until(Duration::from_secs(5), |sim| holds_all(sim, b, a)).unwrap();
    assert!(caught_up, "every record, the large ones included, within 5 rounds");
    let id = sim.node_id(a).clone();
    let state = sim.node(b).node_state(&id).expect("tracked");
    assert_eq!(state.get("large-2").map(str::len), Some(900_000));
    assert_eq!(state.get("large-1").map(str::len), Some(300_000));
    sim.run_for(Duration::from_secs(1)).unwrap();
    let streams = &sim.node(b).metrics().streams;
    assert!(streams.completed >= 1 && streams.frames_received >= 2, "{streams:?}");
    assert_eq!((streams.failed, streams.frames_rejected), (0, 0), "{streams:?}");
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

/// With encryption required, frames travel sealed and a pull works; a
/// plaintext frame is refused and ends the stream.
#[test]
fn sealed_streams_carry_the_state_and_plaintext_frames_are_refused() {
    let mut sim = Simulation::new(9);
    let a = sim.add_node("a", config());
    let b = sim.add_node("b", config());
    let keyring = Keyring::new(SecretKey::from_bytes([7; 32]));
    for node in [a, b] {
        sim.set_encryption(node, EncryptionMode::Required, keyring.clone());
    }
    set_keys(&mut sim, a, 500, 1_000);
    sim.set_seeds(b, &[a]);
    assert!(sim.run_until(Duration::from_secs(3), |sim| holds_all(sim, b, a)).unwrap());
    sim.run_for(Duration::from_secs(1)).unwrap();
    let streams = &sim.node(b).metrics().streams;
    assert!(streams.completed >= 1 && streams.frames_received >= 2, "Records and Done, sealed: {streams:?}");

    // A plaintext Pull to a node that requires encryption.
    let pull = Packet::new(config().cluster_id, Message::Pull { digest: datagrams::empty_digest() });
    let frame = wire::frame(&wire::encode(&pull));
    let (id, refused) = sim.with_node(a, |node, now| {
        let id = node.accept_stream(now, "127.0.0.9:1".parse().unwrap()).unwrap();
        (id, node.handle_stream_data(now, id, &frame))
    });
    assert_eq!(refused, Err(StreamError::Frame(DatagramError::PlaintextRefused)));
    assert!(!sim.node(a).is_stream_open(id));
    assert_eq!(sim.node(a).metrics().streams.frames_rejected, 1);
}

/// What a stream peer can make a node hold or send is bounded: a frame
/// prefix above the limit ends the stream before anything is buffered, a
/// stream that sends nothing is closed by the idle timeout, and streams past
/// `max_streams` are refused.
#[test]
fn streams_are_bounded_in_size_time_and_number() {
    let mut sim = Simulation::new(11);
    let a = sim.add_node("a", config());
    sim.run_for(Duration::from_millis(10)).unwrap();
    let peer: std::net::SocketAddr = "127.0.0.9:1".parse().unwrap();
    let too_long = (wire::MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    let refused = sim.with_node(a, |node, now| {
        let id = node.accept_stream(now, peer).unwrap();
        node.handle_stream_data(now, id, &too_long)
    });
    assert!(matches!(refused, Err(StreamError::Frame(DatagramError::TooLarge { .. }))));

    let max = config().max_streams;
    let ids: Vec<_> = sim.with_node(a, |node, now| (0..max).map(|_| node.accept_stream(now, peer)).collect());
    assert!(ids.iter().all(Option::is_some));
    assert_eq!(sim.with_node(a, |node, now| node.accept_stream(now, peer)), None, "max_streams open");
    // Silent streams end by the idle timeout (a quarter of stream_timeout).
    sim.run_for(config().stream_timeout / 4 + Duration::from_millis(200)).unwrap();
    let node = sim.node(a);
    assert!(ids.iter().flatten().all(|id| !node.is_stream_open(*id)));
    assert_eq!(node.metrics().streams.timed_out, max as u64);
    assert!(sim.with_node(a, |node, now| node.accept_stream(now, peer)).is_some(), "room again");
}
