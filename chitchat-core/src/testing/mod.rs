//! Test support, behind the `testing` feature: what tests, fuzzers,
//! benchmarks and the runtime adapters' conformance suite share. **Not part of
//! the stable API**: it follows the wire format and the internals, and changes
//! with them.
//!
//! - [`Probe`] and [`feed`]: everything observable of a node, to check that a
//!   refused datagram changed nothing (the one rule every input obeys);
//! - [`datagrams`]: builders of hostile and ordinary datagrams;
//! - [`DatagramSealer`]: sealing and opening raw datagrams as a node does;
//! - [`validate_peer`]: a peer whose address is validated, so that answers to
//!   it are not limited by the amplification limit;
//! - [`queue_lengths`], [`node_state_by_fingerprint`] and [`is_validated`]:
//!   internal views; [`let_rumors_run_out`], a settled node's news;
//! - [`campaign`]: fault campaigns in the simulator.
//!
//! The messages and the codec themselves are in [`crate::wire`], public with
//! this feature.

pub mod campaign;
pub mod datagrams;
mod probe;
pub mod workload;

use std::net::SocketAddr;

use crate::chitchat::Chitchat;
use crate::crypto::{Encryption, EncryptionMode};
use crate::error::DatagramError;
use crate::identity::{Fingerprint, NodeId};
use crate::keyring::Keyring;
use crate::node_state::NodeState;
use crate::time::Timestamp;
use crate::wire::{Delta, Message, NONCE_PREFIX_LEN};

pub use probe::{Probe, feed};

/// The lengths of a node's bounded queues: datagrams waiting to be sent,
/// events waiting to be polled, removed identities remembered.
pub fn queue_lengths(node: &Chitchat) -> (usize, usize, usize) {
    node.queue_lengths()
}

/// Whether `node` treats `addr` as validated (see the crate docs on address
/// validation): the gossip address of a tracked, live node whose peer there
/// answered a `Syn` or a `SynAck` of `node`. Answers to a datagram from an
/// address that is not validated are limited to three times its size (and an
/// `Ack` to an unsolicited `SynAck` to its size, validated or not). Read-only.
pub fn is_validated(node: &Chitchat, addr: &SocketAddr) -> bool {
    node.is_validated(addr)
}

/// Lets `node`'s rumors run out, as they do after a few gossip rounds in
/// which nothing changed (without running the rounds, whose probes would go
/// unanswered): its `Syn`s then name no rumor, as a settled node's do.
pub fn let_rumors_run_out(node: &mut Chitchat) {
    node.let_rumors_run_out();
}

/// What a node tracks, vouched for or not. [`Chitchat`]'s views show the
/// application only the nodes vouched for; tests of tracking itself (what a
/// datagram from an address that proved nothing does to the table) read past
/// that.
pub trait Tracked {
    /// The state of a tracked node.
    fn tracked_state(&self, node_id: &NodeId) -> Option<&NodeState>;
    /// Every tracked node's state.
    fn tracked_states(&self) -> impl Iterator<Item = &NodeState>;
    /// What this node thinks of a tracked node's liveness.
    fn tracked_status(&self, node_id: &NodeId) -> Option<crate::NodeStatus>;
}

impl Tracked for Chitchat {
    fn tracked_state(&self, node_id: &NodeId) -> Option<&NodeState> {
        self.node_state_by_fingerprint(node_id.fingerprint())
    }

    fn tracked_states(&self) -> impl Iterator<Item = &NodeState> {
        self.tracked_states().map(|(state, _)| state)
    }

    fn tracked_status(&self, node_id: &NodeId) -> Option<crate::NodeStatus> {
        self.tracked_status_of(node_id.fingerprint())
    }
}

/// How many nodes `node` tracks, itself included, vouched for or not (its
/// views show only those vouched for).
pub fn tracked_nodes(node: &Chitchat) -> usize {
    node.tracked_nodes()
}

/// The state of a node tracked by `node`, by fingerprint.
pub fn node_state_by_fingerprint(node: &Chitchat, fingerprint: Fingerprint) -> Option<&NodeState> {
    node.node_state_by_fingerprint(fingerprint)
}

/// Makes `peer` a tracked, live node of `node` whose address is validated, the
/// way the protocol does: `peer` introduces itself in an `Ack`, `node` opens a
/// handshake with it, and `peer` answers with a `SynAck`. Drains `node`'s
/// outputs. Answers to `peer` are then not limited by the amplification limit
/// (see the crate docs).
pub fn validate_peer(node: &mut Chitchat, now: Timestamp, peer: &NodeId) {
    let cluster_id = node.config().cluster_id.clone();
    let from = peer.gossip_addr();
    node.handle_datagram(
        now,
        from,
        &datagrams::ack(&cluster_id, vec![datagrams::full(peer.clone(), 1, &[])]),
    )
    .expect("the introduction is accepted");
    while node.poll_transmit().is_some() {}
    node.gossip_with(now, from);
    let syn = node.poll_transmit().expect("a Syn to the peer");
    while node.poll_transmit().is_some() {}
    let syn_ack = Message::SynAck { digest: datagrams::empty_digest(), delta: Delta::default() };
    node.handle_datagram(now, from, &datagrams::answering(&cluster_id, &syn.bytes, syn_ack))
        .expect("the SynAck is accepted");
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
}

/// Makes `node` track `count` more nodes, `node-0000` at `127.0.0.1:10000`
/// and on, each with `keys` records `key-00`… (value `value-{node}-{key}`)
/// and heartbeat 100, introduced in `Ack`s from a validated peer, `relay` at
/// `127.0.0.2:10000` (tracked too): `node` relays them, and their own
/// addresses are not validated. Drains `node`'s events.
pub fn track_nodes(node: &mut Chitchat, now: Timestamp, count: u16, keys: usize) {
    let cluster_id = node.config().cluster_id.clone();
    let relay = NodeId::new("relay", 1, std::net::SocketAddr::from(([127, 0, 0, 2], 10_000)));
    validate_peer(node, now, &relay);
    for i in 0..count {
        let records: Vec<(String, String, u64)> =
            (0..keys).map(|k| (format!("key-{k:02}"), format!("value-{i}-{k}"), k as u64 + 1)).collect();
        let records: Vec<(&str, &str, u64)> =
            records.iter().map(|(k, v, n)| (k.as_str(), v.as_str(), *n)).collect();
        let id =
            NodeId::new(format!("node-{i:04}"), 1, std::net::SocketAddr::from(([127, 0, 0, 1], 10_000 + i)));
        node.handle_datagram(
            now,
            relay.gossip_addr(),
            &datagrams::ack(&cluster_id, vec![datagrams::full(id, 100, &records)]),
        )
        .expect("the introduction is accepted");
    }
    while node.poll_event().is_some() {}
}

/// Seals and opens raw datagrams outside a node, as a node does: for
/// benchmarks and fuzzers. Opening neither decodes the message nor notes
/// replays.
#[derive(Debug)]
pub struct DatagramSealer(Encryption);

impl DatagramSealer {
    /// A sealer in `Required` mode.
    pub fn new(keyring: Keyring, nonce_salt: [u8; NONCE_PREFIX_LEN]) -> Self {
        let mut encryption = Encryption::default();
        encryption.install(EncryptionMode::Required, keyring, nonce_salt, 0, 0, 1);
        DatagramSealer(encryption)
    }

    /// Seals a plaintext datagram (as [`crate::wire::encode`] makes them).
    pub fn seal(&mut self, plaintext: Vec<u8>, cluster_id: &str) -> Option<Vec<u8>> {
        self.0.seal(plaintext, cluster_id)
    }

    /// Authenticates and decrypts a sealed datagram (or a frame's envelope);
    /// returns the plaintext.
    pub fn open<'a>(&'a mut self, sealed: &'a [u8], cluster_id: &str) -> Result<&'a [u8], DatagramError> {
        Ok(self.0.open(sealed, cluster_id, crate::wire::MAX_FRAME_LEN)?.0)
    }
}
