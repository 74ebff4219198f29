//! What the targets check after a node accepted a datagram: the core's
//! invariants hold, versions only grow, and what it sends fits and decodes.
//! (That a refused datagram changed nothing is checked by
//! [`chitchat_core::testing::feed`].)

use std::collections::BTreeMap;

use chitchat_core::testing::DatagramSealer;
use chitchat_core::{Chitchat, Event, Fingerprint, wire};

/// Remembers what a node showed, to check that it only moves forward.
#[derive(Default)]
pub struct Watch {
    /// Highest max version seen per tracked node, forgotten on reset or removal.
    versions: BTreeMap<Fingerprint, u64>,
    /// Events the node had dropped when last drained.
    events_dropped: u64,
    /// Opens what the node seals, if it seals.
    opener: Option<DatagramSealer>,
}

impl Watch {
    /// A watch that starts from what `node` holds now.
    pub fn new(node: &Chitchat) -> Self {
        let mut watch = Watch { events_dropped: node.metrics().events_dropped, ..Watch::default() };
        watch.check(node);
        watch
    }

    /// Opens the node's sealed datagrams with `opener` (holding the node's
    /// primary key) before checking them.
    pub fn with_opener(mut self, opener: DatagramSealer) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Checks the bounds, that versions only grow, and that every queued
    /// datagram fits and decodes. Drains nothing.
    pub fn check(&mut self, node: &Chitchat) {
        let config = node.config();
        let (transmits, events, removed) = chitchat_core::testing::queue_lengths(node);
        assert!(transmits <= config.max_pending_transmits, "{transmits} datagrams queued");
        assert!(events <= config.max_pending_events, "{events} events queued");
        assert!(removed <= config.max_nodes, "{removed} removed identities remembered");
        let tracked = node.node_states().count();
        assert!(tracked <= config.max_nodes, "{tracked} nodes tracked, max_nodes is {}", config.max_nodes);
        for state in node.node_states() {
            assert!(
                state.num_records() <= config.max_keys_per_node,
                "{} holds {} records, max_keys_per_node is {}",
                state.id(),
                state.num_records(),
                config.max_keys_per_node
            );
            let seen = self.versions.entry(state.id().fingerprint()).or_insert(0);
            assert!(
                state.max_version() >= *seen,
                "{}'s max version went back from {} to {}",
                state.id(),
                seen,
                state.max_version()
            );
            *seen = state.max_version();
        }
    }

    /// Drains the node's outputs (checking them), then checks the invariants.
    pub fn settle(&mut self, node: &mut Chitchat) {
        self.drain(node);
        self.check(node);
    }

    /// Takes note of an event: a reset or removal lets a node's versions restart.
    pub fn note(&mut self, event: &Event) {
        if let Event::NodeReset(node) | Event::NodeRemoved(node) = event {
            self.versions.remove(&node.fingerprint());
        }
    }

    /// Drains the node's outputs, checking each: datagrams fit the maximum and
    /// decode to what re-encodes to the same bytes.
    pub fn drain(&mut self, node: &mut Chitchat) {
        let max = node.config().max_datagram_size;
        while let Some(transmit) = node.poll_transmit() {
            assert!(transmit.bytes.len() <= max, "a {}-byte datagram exceeds {max}", transmit.bytes.len());
            let bytes = match &mut self.opener {
                Some(opener) => opener
                    .open(&transmit.bytes, &node.config().cluster_id)
                    .unwrap_or_else(|error| panic!("the node sent a datagram its peers cannot open: {error}"))
                    .to_vec(),
                None => transmit.bytes,
            };
            let packet = wire::decode(&bytes)
                .unwrap_or_else(|error| panic!("the node sent a datagram it cannot decode: {error}"));
            assert_eq!(wire::encode(&packet), bytes, "a sent datagram does not re-encode the same");
        }
        while let Some(event) = node.poll_event() {
            self.note(&event);
        }
        let dropped = node.metrics().events_dropped;
        if dropped > self.events_dropped {
            // A reset or removal may be among the lost events.
            self.versions.clear();
            self.events_dropped = dropped;
        }
    }
}
