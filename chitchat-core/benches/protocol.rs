//! Benchmarks of the protocol's hot paths (divan).
//!
//! ```text
//! cargo bench -p chitchat-core --bench protocol
//! ```
//!
//! - `idle_handshake`: Syn → SynAck → Ack between two nodes that each know the
//!   same 1,000 nodes × 20 keys (nothing to transfer: the digests are the work),
//!   both sides' CPU, encoding and decoding included.
//! - `full_transfer_handshake`: a fresh node opens a handshake with a node that
//!   knows 1,000 nodes × 20 keys and receives a full datagram of new state.
//! - `encode_datagram` / `decode_datagram`: one full 64 KB SynAck.
//! - `sim_round_1000`: one gossip round of a simulated 1,000-node cluster (no
//!   keys), network and all.
//! - `idle_handshake_encrypted`: `idle_handshake` with every datagram sealed
//!   and opened (XChaCha20-Poly1305, `EncryptionMode::Required`).
//! - `seal_datagram` / `open_datagram`: sealing and authenticating-decrypting
//!   one datagram of 1,400 bytes and of 64 KB (no postcard work).

use std::net::SocketAddr;
use std::time::Duration;

use chitchat_core::sim::Simulation;
use chitchat_core::testing::DatagramSealer;
use chitchat_core::testing::datagrams::{ack, full_with};
use chitchat_core::wire::{KeyValueUpdate, SEAL_OVERHEAD, ValueUpdate};
use chitchat_core::{Chitchat, Config, EncryptionMode, Keyring, NodeId, SecretKey, Timestamp, wire};

fn main() {
    divan::main();
}

const NODES: u16 = 1_000;
const KEYS: u64 = 20;
const T0: Timestamp = Timestamp::ZERO;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config() -> Config {
    Config { max_nodes: 4_000, ..Config::default() }
}

/// The Acks that teach a node `NODES` nodes of `KEYS` keys each.
fn cluster_datagrams() -> Vec<Vec<u8>> {
    (0..NODES)
        .map(|i| {
            let key_values = (1..=KEYS)
                .map(|k| KeyValueUpdate {
                    key: format!("service-{k:02}").into(),
                    version: k,
                    value: ValueUpdate::Set(format!("10.0.{}.{}:{}", i / 256, i % 256, 7000 + k).into()),
                })
                .collect();
            let id = NodeId::new(format!("node-{i:04}"), 1, addr(10_000 + i));
            ack(&config().cluster_id, vec![full_with(id, 100, key_values)])
        })
        .collect()
}

fn node(name: &str, port: u16, datagrams: &[Vec<u8>]) -> Chitchat {
    let mut node =
        Chitchat::new(config(), NodeId::new(name, 1, addr(port)), Vec::<(&str, &str)>::new(), T0).unwrap();
    // The Acks come from a peer whose address the node validated: the nodes
    // they introduce are vouched for, so the node relays them.
    chitchat_core::testing::validate_peer(&mut node, T0, &NodeId::new("relay", 1, addr(9)));
    for datagram in datagrams {
        node.handle_datagram(T0, addr(9), datagram).unwrap();
    }
    drain(&mut node);
    node
}

fn drain(node: &mut Chitchat) -> Vec<Vec<u8>> {
    while node.poll_event().is_some() {}
    std::iter::from_fn(|| node.poll_transmit()).map(|transmit| transmit.bytes).collect()
}

/// One handshake opened by `a` with `b`; returns the bytes exchanged.
fn handshake(a: &mut Chitchat, b: &mut Chitchat) -> usize {
    let (a_addr, b_addr) = (a.self_id().gossip_addr(), b.self_id().gossip_addr());
    a.gossip_with(T0, b_addr);
    let mut bytes = 0;
    for syn in drain(a) {
        bytes += syn.len();
        b.handle_datagram(T0, a_addr, &syn).unwrap();
    }
    for syn_ack in drain(b) {
        bytes += syn_ack.len();
        a.handle_datagram(T0, b_addr, &syn_ack).unwrap();
    }
    for ack in drain(a) {
        bytes += ack.len();
        b.handle_datagram(T0, a_addr, &ack).unwrap();
    }
    drain(b);
    bytes
}

/// Two nodes that know the same cluster and each other, settled: the news of
/// what they learned has run out, as it does a few rounds after it came.
fn synced_pair() -> (Chitchat, Chitchat) {
    let datagrams = cluster_datagrams();
    let mut a = node("a", 1, &datagrams);
    let mut b = node("b", 2, &datagrams);
    for _ in 0..3 {
        handshake(&mut a, &mut b);
        handshake(&mut b, &mut a);
    }
    chitchat_core::testing::let_rumors_run_out(&mut a);
    chitchat_core::testing::let_rumors_run_out(&mut b);
    (a, b)
}

#[divan::bench(sample_count = 200)]
fn idle_handshake(bencher: divan::Bencher) {
    let (mut a, mut b) = synced_pair();
    bencher.bench_local(|| handshake(&mut a, &mut b));
}

#[divan::bench(sample_count = 50)]
fn full_transfer_handshake(bencher: divan::Bencher) {
    let datagrams = cluster_datagrams();
    bencher
        .with_inputs(|| {
            let mut loaded = node("loaded", 1, &datagrams);
            let fresh =
                Chitchat::new(config(), NodeId::new("fresh", 1, addr(3)), Vec::<(&str, &str)>::new(), T0)
                    .unwrap();
            // A validated address: the answer is not held to three times the
            // Syn (the amplification limit), it fills the datagram.
            chitchat_core::testing::validate_peer(&mut loaded, T0, fresh.self_id());
            (loaded, fresh)
        })
        .bench_local_refs(|(loaded, fresh)| handshake(fresh, loaded));
}

fn full_syn_ack() -> Vec<u8> {
    let datagrams = cluster_datagrams();
    let mut loaded = node("loaded", 1, &datagrams);
    let mut fresh =
        Chitchat::new(config(), NodeId::new("fresh", 1, addr(3)), Vec::<(&str, &str)>::new(), T0).unwrap();
    chitchat_core::testing::validate_peer(&mut loaded, T0, fresh.self_id());
    fresh.gossip_with(T0, addr(1));
    let syn = drain(&mut fresh).remove(0);
    loaded.handle_datagram(T0, addr(3), &syn).unwrap();
    drain(&mut loaded).remove(0)
}

#[divan::bench]
fn decode_datagram(bencher: divan::Bencher) {
    let bytes = full_syn_ack();
    bencher
        .counter(divan::counter::BytesCount::new(bytes.len()))
        .bench(|| wire::decode(divan::black_box(&bytes)));
}

#[divan::bench]
fn encode_datagram(bencher: divan::Bencher) {
    let packet = wire::decode(&full_syn_ack()).unwrap();
    bencher.bench(|| wire::encode(divan::black_box(&packet)));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn sim_round_1000(bencher: divan::Bencher) {
    let mut sim = Simulation::new(1);
    sim.set_record_events(false);
    sim.set_check_invariants(false);
    let nodes: Vec<_> =
        (0..1_000).map(|i| sim.add_node(&format!("node-{i:04}"), Config::default())).collect();
    sim.set_seeds_all(&[nodes[0]]);
    sim.run_for(Duration::from_secs(10)).unwrap();
    bencher.bench_local(|| sim.run_for(Duration::from_secs(1)).unwrap());
}

fn keyring() -> Keyring {
    Keyring::new(SecretKey::from_bytes([7; 32]))
}

#[divan::bench(sample_count = 200)]
fn idle_handshake_encrypted(bencher: divan::Bencher) {
    let (mut a, mut b) = synced_pair();
    a.set_encryption(EncryptionMode::Required, keyring(), [1; 16]).unwrap();
    b.set_encryption(EncryptionMode::Required, keyring(), [2; 16]).unwrap();
    bencher.bench_local(|| handshake(&mut a, &mut b));
}

/// Datagram sizes, sealed envelope included: one Ethernet frame's worth and UDP's largest.
const SEALED_SIZES: [usize; 2] = [1_400, Config::MAX_DATAGRAM_SIZE];

fn plaintext(sealed_len: usize) -> Vec<u8> {
    let mut bytes = vec![0x5a; sealed_len - SEAL_OVERHEAD];
    bytes[..4].copy_from_slice(&[b'C', b'C', b'T', wire::PROTOCOL_VERSION]);
    bytes
}

#[divan::bench(args = SEALED_SIZES)]
fn seal_datagram(bencher: divan::Bencher, len: usize) {
    let mut sealer = DatagramSealer::new(keyring(), [1; 16]);
    let plaintext = plaintext(len);
    bencher
        .counter(divan::counter::BytesCount::new(len))
        .with_inputs(|| plaintext.clone())
        .bench_local_values(|plaintext| sealer.seal(plaintext, "default-cluster").unwrap());
}

#[divan::bench(args = SEALED_SIZES)]
fn open_datagram(bencher: divan::Bencher, len: usize) {
    let sealed = DatagramSealer::new(keyring(), [1; 16]).seal(plaintext(len), "default-cluster").unwrap();
    assert_eq!(sealed.len(), len);
    let mut opener = DatagramSealer::new(keyring(), [2; 16]);
    bencher
        .counter(divan::counter::BytesCount::new(len))
        .bench_local(|| opener.open(divan::black_box(&sealed), "default-cluster").unwrap().len());
}
